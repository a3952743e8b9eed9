"""The version of edgeconv (a module of its own: every layer may read it without importing the package root)."""

__version__ = "0.1.0"
