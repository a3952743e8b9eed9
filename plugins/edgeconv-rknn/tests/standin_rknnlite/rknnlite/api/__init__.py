"""STAND-IN ``rknnlite.api`` (tests only; see ``rknnlite/__init__.py``): onnxruntime on the ONNX original.

The ONNX original of a .rknn is found by the .rknn's sha256 in ``<sys.prefix>/edgeconv-standin-models.json``
(written by the loopback-board test into the stand-in board's own environment), else as ``rknn_build/model.onnx``
beside the .rknn (the exporter's recipe folder).
"""

# ruff: noqa: B905  (the stand-in runs on the board's Python, as the board half does)

import hashlib
import json
import os
import sys


def _original(path):
    table = os.path.join(sys.prefix, "edgeconv-standin-models.json")
    if os.path.exists(table):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(table) as f:
            found = json.load(f).get(digest)
        if found:
            return found
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), "rknn_build", "model.onnx")
    return beside if os.path.exists(beside) else None


class RKNNLite:
    EDGECONV_STAND_IN = "STAND-IN rknnlite (onnxruntime on the ONNX original; tests only)"
    NPU_CORE_AUTO = 0
    NPU_CORE_0 = 1
    NPU_CORE_1 = 2
    NPU_CORE_2 = 4
    NPU_CORE_0_1 = 3
    NPU_CORE_0_1_2 = 7
    NPU_CORE_ALL = 0xFFFF
    calls = []  # (method, argument) of every call, for the tests

    def __init__(self, verbose=False, verbose_file=None):
        self.onnx = None
        self.session = None

    def load_rknn(self, path, key_path=None):
        RKNNLite.calls.append(("load_rknn", path))
        if not os.path.exists(path):
            return -1
        self.onnx = _original(path)
        return 0 if self.onnx else -1

    def init_runtime(self, target=None, device_id=None, async_mode=False, core_mask=NPU_CORE_AUTO):
        RKNNLite.calls.append(("init_runtime", core_mask))
        if self.onnx is None or core_mask not in (0, 1, 2, 4, 3, 7, 0xFFFF):
            return -1
        import onnxruntime as ort

        self.session = ort.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
        return 0

    def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None, get_frame_id=False):
        RKNNLite.calls.append(("inference", data_format))
        if self.session is None:
            return None
        names = [i.name for i in self.session.get_inputs()]
        return self.session.run(None, dict(zip(names, inputs)))

    def release(self):
        RKNNLite.calls.append(("release", None))
        self.session = None
