"""edgeconv-example: an example edgeconv backend (ONNX at a pinned opset)."""

__version__ = "0.1.0"
