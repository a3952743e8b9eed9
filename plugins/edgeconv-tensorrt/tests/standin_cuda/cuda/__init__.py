"""STAND-IN for cuda-python (tests only; see ``bindings/runtime.py``)."""
