"""STAND-IN for TensorRT's Python API, used only by edgeconv-tensorrt's board-half tests (no GPU, no Jetson here).

It is NOT TensorRT: a "plan" is the JSON toy model of ``tests/board_half_testutil.py`` (``logits = x.flat @ w + b``,
``total = x.sum``). It mimics the name-based I/O API the board half uses (Runtime.deserialize_cuda_engine,
num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype, create_execution_context, set_input_shape,
get_tensor_shape, set_tensor_address, execute_async_v3) and reads / writes its tensors at the device addresses the
half set, in the STAND-IN cuda runtime's memory. It proves the half's plumbing, never a plan's numbers.
"""

import ctypes
import enum
import json

import numpy as np
from standin_calls import CALLS

__version__ = "10.3.0"
EDGECONV_STAND_IN = "STAND-IN tensorrt (numpy on a JSON toy plan; tests only)"
IO = ("total", "input", "logits")  # the plan's I/O order: an output first, to test naming by mode and name


class DataType(enum.Enum):
    FLOAT = "float32"
    INT32 = "int32"


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


def nptype(dtype):
    return np.dtype(dtype.value).type


class Logger:
    WARNING = 2

    def __init__(self, level=WARNING):
        self.level = level


class Runtime:
    def __init__(self, logger):
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data):
        CALLS.append(("deserialize_cuda_engine", self.engine_host_code_allowed))
        try:
            plan = json.loads(bytes(data).decode())
            return ICudaEngine(np.asarray(plan["w"], np.float32), np.asarray(plan["b"], np.float32))
        except (ValueError, KeyError, UnicodeDecodeError):
            return None


class ICudaEngine:
    def __init__(self, w, b):
        self.w, self.b = w, b
        self.num_io_tensors = len(IO)

    def get_tensor_name(self, i):
        return IO[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def create_execution_context(self):
        CALLS.append(("create_execution_context", None))
        return IExecutionContext(self)


def _view(ptr, shape):
    n = int(np.prod(shape)) * 4
    return np.frombuffer((ctypes.c_char * n).from_address(int(ptr)), dtype=np.float32).reshape(shape)


class IExecutionContext:
    def __init__(self, engine):
        self.engine = engine
        self.shape = None
        self.addresses = {}

    def set_input_shape(self, name, shape):
        CALLS.append(("set_input_shape", [name, list(shape)]))
        ok = name == "input" and len(shape) >= 2 and int(np.prod(shape[1:])) == self.engine.w.shape[0]
        self.shape = tuple(shape) if ok else None
        return ok

    def get_tensor_shape(self, name):
        n = self.shape[0] if self.shape else -1
        return (n, self.engine.w.shape[1]) if name == "logits" else (n, 1)

    def set_tensor_address(self, name, ptr):
        CALLS.append(("set_tensor_address", name))
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle):
        CALLS.append(("execute_async_v3", type(stream_handle).__name__))
        if self.shape is None or set(self.addresses) != set(IO):
            return False
        x = _view(self.addresses["input"], self.shape).reshape(self.shape[0], -1)
        _view(self.addresses["logits"], (self.shape[0], self.engine.w.shape[1]))[...] = x @ self.engine.w + self.engine.b
        _view(self.addresses["total"], (self.shape[0], 1))[...] = x.sum(axis=1, keepdims=True)
        return True
