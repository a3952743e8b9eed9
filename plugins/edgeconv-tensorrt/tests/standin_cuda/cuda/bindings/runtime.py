"""STAND-IN ``cuda.bindings.runtime`` (cuda-python's cudart), used only by edgeconv-tensorrt's board-half tests.

"Device" memory is host memory (ctypes buffers) tracked by address, so the half's buffers, copies and frees are real
and checked: a copy in the wrong direction, to an unknown pointer or past an allocation fails as CUDA would. Every
call returns ``(err, *values)`` as cuda-python's do, and is logged in ``standin_calls.CALLS``.
"""

import ctypes
import enum

from standin_calls import CALLS


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:
    def __init__(self, handle):
        self.handle = handle

    def __int__(self):
        return self.handle


MEMORY = {}  # address -> (buffer, size)
OK, BAD = cudaError_t.cudaSuccess, cudaError_t.cudaErrorInvalidValue


def cudaSetDevice(device):
    CALLS.append(("cudaSetDevice", device))
    return (OK,) if device == 0 else (BAD,)


def cudaStreamCreate():
    CALLS.append(("cudaStreamCreate", None))
    return OK, cudaStream_t(0x5EED)


def cudaMalloc(size):
    CALLS.append(("cudaMalloc", size))
    buf = ctypes.create_string_buffer(size)
    MEMORY[ctypes.addressof(buf)] = (buf, size)
    return OK, ctypes.addressof(buf)


def cudaFree(ptr):
    CALLS.append(("cudaFree", None))
    return (OK,) if MEMORY.pop(int(ptr), None) else (BAD,)


def _fits(ptr, n):
    return any(a <= int(ptr) and int(ptr) + n <= a + size for a, (_b, size) in MEMORY.items())


def cudaMemcpyAsync(dst, src, count, kind, stream):
    CALLS.append(("cudaMemcpyAsync", kind.name))
    device = dst if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else src
    if not isinstance(stream, cudaStream_t) or not _fits(device, count):
        return (BAD,)
    ctypes.memmove(int(dst), int(src), count)
    return (OK,)


def cudaStreamSynchronize(stream):
    CALLS.append(("cudaStreamSynchronize", None))
    return (OK,)


def cudaStreamDestroy(stream):
    CALLS.append(("cudaStreamDestroy", None))
    return (OK,)
