"""STAND-IN ``sophon.sail`` (tests only): NOT a TPU runtime.

A ".bmodel" is the JSON toy model of ``tests/board_half_testutil.py``; ``Engine`` mimics SAIL's documented API
(``Engine(bmodel_path, tpu_id, IOMode.SYSIO)``, ``get_graph_names``, ``get_input_names`` / ``get_output_names``,
``process(graph, {name: array}) -> {name: array}``) with tpu-mlir-style renamed tensors (``logits_Gemm``...), so the
half must map outputs by order to the contract's names. Every call is logged in ``CALLS``.
"""

import enum
import json

import numpy as np

CALLS = []
EDGECONV_STAND_IN = "STAND-IN sophon.sail (numpy on a JSON toy bmodel; tests only)"


class IOMode(enum.Enum):
    SYSI = 0
    SYSO = 1
    SYSIO = 2
    DEVIO = 3


class Engine:
    def __init__(self, bmodel_path, tpu_id, mode):
        CALLS.append(("Engine", [tpu_id, mode.name]))
        if tpu_id != 0:
            raise RuntimeError("bm_dev_request failed: no TPU %d" % tpu_id)
        with open(bmodel_path) as f:
            plan = json.load(f)
        self.w, self.b = np.asarray(plan["w"], np.float32), np.asarray(plan["b"], np.float32)

    def get_graph_names(self):
        return ["toy"]

    def get_input_names(self, graph):
        return ["input"]

    def get_output_names(self, graph):
        return ["logits_Gemm_f32", "total_ReduceSum_f32"]

    def process(self, graph, inputs, core_list=None):
        CALLS.append(("process", [graph, sorted(inputs)]))
        if graph != "toy" or sorted(inputs) != ["input"]:
            raise RuntimeError("bad graph or input names")
        flat = np.asarray(inputs["input"], np.float32).reshape(inputs["input"].shape[0], -1)
        # SAIL hands back a dict; its order is not the bmodel's output order
        return {"total_ReduceSum_f32": flat.sum(axis=1, keepdims=True), "logits_Gemm_f32": flat @ self.w + self.b}
