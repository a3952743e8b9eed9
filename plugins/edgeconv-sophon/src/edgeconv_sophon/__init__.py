"""edgeconv-sophon: the ``sophon`` target (.bmodel for Sophgo Sophon TPUs) on tpu-mlir, run in an isolated toolchain
environment (``edgeconv toolchain install sophon``) and verified in tpu-mlir's cmodel simulator."""

__version__ = "0.1.0"
