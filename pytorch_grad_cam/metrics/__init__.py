"""Metrics that score how faithful a CAM is."""
