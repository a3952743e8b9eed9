"""STAND-IN ``ais_bench.infer.interface`` (tests only): NOT an NPU runtime.

An ".om" is the JSON toy model of ``tests/board_half_testutil.py``; ``InferSession`` mimics ais_bench's API
(``InferSession(device_id, model_path)``, ``get_inputs`` / ``get_outputs``, ``infer(feeds, mode)`` -> arrays in the
.om's order, ``set_dynamic_batchsize``, ``free_resource``) with the .om's own (ATC-style) tensor names, which differ
from the contract's. Every call is logged in ``CALLS``. It proves the board half's plumbing, never the numbers.
"""

import json
import os

import numpy as np

CALLS = []


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape, self.datatype = name, shape, "FLOAT32"


class InferSession:
    EDGECONV_STAND_IN = "STAND-IN ais_bench (numpy on a JSON toy .om; tests only)"

    def __init__(self, device_id, model_path, acl_json_path=None, debug=False, loop=1):
        CALLS.append(("InferSession", [device_id, os.path.basename(model_path)]))
        if device_id != 0:
            raise RuntimeError("acl.rt.set_device failed: no NPU %d" % device_id)
        with open(model_path) as f:
            plan = json.load(f)
        self.w, self.b = np.asarray(plan["w"], np.float32), np.asarray(plan["b"], np.float32)
        self.batch = None

    def get_inputs(self):
        return [_Tensor("x_om", [-1, self.w.shape[0]])]

    def get_outputs(self):
        return [_Tensor("Gemm_0:0:logits", [-1, self.w.shape[1]]), _Tensor("ReduceSum_1:0:total", [-1, 1])]

    def set_dynamic_batchsize(self, batch):
        CALLS.append(("set_dynamic_batchsize", batch))
        self.batch = batch

    def infer(self, feeds, mode="static", custom_sizes=100000, out_array=True):
        CALLS.append(("infer", [mode, len(feeds)]))
        if len(feeds) != 1:
            raise RuntimeError("the .om has 1 input, got %d" % len(feeds))
        x = np.asarray(feeds[0], np.float32)
        if self.batch is not None and x.shape[0] != self.batch:
            raise RuntimeError("batch %d fed, gear %d set" % (x.shape[0], self.batch))
        flat = x.reshape(x.shape[0], -1)
        return [flat @ self.w + self.b, flat.sum(axis=1, keepdims=True)]

    def free_resource(self):
        CALLS.append(("free_resource", None))
