"""The machinery of one CAM call (private): validation, outputs, target scores, modes, the task seam."""
