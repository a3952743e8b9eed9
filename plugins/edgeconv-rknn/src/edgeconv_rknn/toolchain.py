"""The ``rknn`` toolchain environment: rknn-toolkit2 2.5.0 on Python 3.11, as edgeconv builds it.

What the wheel needs beyond its metadata, found by installing and running it on Debian 12 (x86-64) on 2026-12-04:

- ``rknn_toolkit2-2.5.0-cp311`` declares ``numpy<=1.26.4``, ``onnx>=1.16.1,<=1.18.0``, ``protobuf>=4.21.6,<=4.25.4``,
  ``onnxruntime>=1.17.0``, ``opencv-python>=4.5.5.64``, ``torch>=1.10.1,<=2.4.0``, ``scipy``, ``psutil``,
  ``ruamel.yaml``, ``tqdm``, ``fast-histogram``. A plain ``pip install`` resolves torch 2.4.0, which on PyPI is the
  CUDA build with its nvidia-* wheels (5.6 GB). The toolkit's ONNX path does not need CUDA: its compiled
  ``rknn/api/rknn_utils`` imports ``torch`` at module level (``import rknn.api`` fails without it), and the CPU
  ``torch==2.13.0+cpu`` wheel works. The pin ``torch<=2.4.0`` therefore cannot be honoured and pip's resolver must
  not see it: the environment is installed with ``--no-deps`` from a *complete* list of pinned distributions
  (``REQUIREMENTS``: the toolkit, every distribution it and its dependencies import, nothing resolved implicitly).
  The check below imports every module of that path, so a missing one fails the build.
- ``opencv-python-headless`` stands in for ``opencv-python`` (the same ``cv2`` module, without the X11/OpenGL
  libraries the desktop build links; the toolkit's ONNX path reads no image through a GUI).
- torch 2.13 requires setuptools, and the toolkit imports ``pkg_resources`` (``rknn/api/rknn.py``), which setuptools
  removed in 81: ``setuptools==80.10.2``.
- The CPU torch wheel is not on PyPI: pip finds ``torch==2.13.0+cpu`` in a local wheel folder (``PIP_FIND_LINKS``; on
  this machine ``/opt/wheels``) or on the PyTorch CPU index (``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu``,
  not reachable here). Without either the build fails with pip's "No matching distribution" and nothing is installed.
"""

from __future__ import annotations

from edgeconv.plugin import Toolchain

TOOLKIT_VERSION = "2.5.0"

# Every distribution of the environment, pinned (versions resolved on 2026-12-04 with pip 23.0.1 of Python 3.11.2).
REQUIREMENTS = (
    f"rknn-toolkit2=={TOOLKIT_VERSION}",
    "torch==2.13.0+cpu",
    "numpy==1.26.4", "onnx==1.18.0", "onnxruntime==1.26.0", "protobuf==4.25.4",
    "opencv-python-headless==4.11.0.86", "scipy==1.17.1", "psutil==7.2.2", "ruamel.yaml==0.19.1", "tqdm==4.70.1",
    "fast-histogram==0.14", "flatbuffers==25.12.19", "packaging==26.4", "typing_extensions==4.16.0",
    # torch 2.13's own requirements
    "filelock==4.3.2", "fsspec==2026.9.0", "Jinja2==3.1.6", "MarkupSafe==3.0.4", "mpmath==1.3.0", "networkx==3.6.1",
    "sympy==1.14.0", "setuptools==80.10.2",
)

# The check: every module of the ONNX path imports, the toolkit starts, and it builds a one-node model.
CHECK = """\
import importlib, os, sys, tempfile
for m in ("numpy", "onnx", "onnxruntime", "cv2", "scipy", "torch", "pkg_resources", "rknn.api"):
    importlib.import_module(m)
import numpy as np, onnx
from onnx import TensorProto, helper
from rknn.api import RKNN
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "check",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "check.onnx")
    onnx.save(m, path)
    r = RKNN(verbose=False)
    codes = [r.config(target_platform="rk3588"), r.load_onnx(path), r.build(do_quantization=False),
             r.export_rknn(os.path.join(d, "check.rknn"))]
    r.release()
if any(codes):
    sys.exit(f"rknn-toolkit2 could not build a one-node model (return codes {codes})")
print("rknn-toolkit2", importlib.import_module("importlib.metadata").version("rknn-toolkit2"))
"""

RKNN = Toolchain(
    name="rknn",
    title="rknn-toolkit2",
    python="3.11",
    requirements=REQUIREMENTS,
    pip_args=("--no-deps",),
    check=("-c", CHECK),
    packages=("rknn-toolkit2", "torch", "onnx", "onnxruntime", "numpy", "protobuf"),
    description="Rockchip's rknn-toolkit2 (ONNX -> .rknn, w8a8 quantization, hybrid quantization, accuracy "
                "analysis, simulator) for RK3588 / RK3576 / RK3566 / RK3568 / RK3562 / RV1106 / RV1103",
)
