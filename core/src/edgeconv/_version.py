"""The version of edgeconv (a module of its own: every layer may read it without importing the package root)."""

__version__ = "0.1.0"

# The plugin API's version (``edgeconv.plugin``, docs/hooks.md): MAJOR.MINOR; a plugin declares the one it targets.
API_VERSION = "1.0"
