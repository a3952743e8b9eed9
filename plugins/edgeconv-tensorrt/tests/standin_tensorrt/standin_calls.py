"""The call log shared by the STAND-IN ``tensorrt`` and ``cuda`` modules (tests only)."""

CALLS = []
