"""edgeconv-rknn: the ``rknn`` target (.rknn for Rockchip NPUs) on rknn-toolkit2, run in an isolated toolchain
environment (``edgeconv toolchain install rknn``) and verified in the toolkit's simulator; ``board.py`` runs a .rknn
on a Rockchip board with rknn-toolkit-lite2."""

__version__ = "0.1.0"
