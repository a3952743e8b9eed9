"""STAND-IN for Huawei's ais_bench, used only by edgeconv-ascend's board-half tests (no Ascend NPU here; see
``infer/interface.py``)."""
