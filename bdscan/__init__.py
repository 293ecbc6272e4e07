"""bdscan: find and remove backdoors from image classifiers."""

__version__ = "0.1.0"
