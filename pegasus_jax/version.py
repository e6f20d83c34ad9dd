"""The package version (a leaf: stored in checkpoint metadata without importing the package API)."""

__version__ = "0.1.0"
