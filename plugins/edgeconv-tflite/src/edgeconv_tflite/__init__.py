"""edgeconv's TFLite / LiteRT backend (target ``tflite``). See ``hooks.py`` for what it registers."""

__version__ = "0.1.0"
