"""Helpers: images, targets, reshape transforms, model outputs, argument checks."""
