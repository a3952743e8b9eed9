"""The ``sophon`` toolchain environment: tpu-mlir 1.30.2 on Python 3.10, as edgeconv builds it.

What the wheel needs beyond its metadata, found by running it on Debian 12 (glibc 2.36):

- ``tpu_mlir==1.30.2`` requires Python ``>=3.10,<3.11`` and pins numpy 1.24.3, protobuf 3.20.3, scipy, opencv ...;
  its ``onnx`` extra pins onnx 1.14.1, onnxruntime 1.16.3 and onnxsim 0.4.17 (needed: ``OnnxConverter`` imports
  onnxsim). ``psutil`` is imported by ``utils/mlir_shell.py`` (every tool) and declared nowhere.
- ``tpu_mlir/lib/third_party`` bundles Ubuntu 22.04's glibc 2.35 (``libc.so.6``, ``libm.so.6``,
  ``libpthread.so.0``); ``import tpu_mlir`` puts that folder on LD_LIBRARY_PATH, so every tool the package starts
  fails on a newer glibc (``libexpat.so.1: version `GLIBC_2.36' not found``). Moved aside, the host's glibc is used.
- ``torch`` (its ``torch`` extra: torch 2.11.0, which on PyPI is the CUDA build with several GB of nvidia-* wheels)
  is imported at the top of four modules of the ONNX path -- ``transform/OnnxOpt.py`` (used only for models with
  onnxruntime-extensions custom ops), ``calibration/kld_calibrator.py`` (used only with
  ``--debug_cmd use_torch_observer_for_cali``), ``calibration/simple_tunner.py`` and
  ``calibration/transformer_pattern.py`` (not used at all). Those four imports are made optional; torch is not
  installed. PyTorch-model conversion (``model_transform`` of a ``.pt``) is therefore not available in this
  environment (edgeconv exports PyTorch models to ONNX itself).
- ``LOCK`` pins every other distribution at the versions resolved on 2026-11-28 (pip 23.0.1 of Python 3.10.13);
  ``pycocotools==2.0.6`` has no cp310 wheel and is built from its sdist (a C compiler is needed).
"""

from __future__ import annotations

from edgeconv.plugin import MoveAside, OptionalImport, Toolchain

TPU_MLIR_VERSION = "1.30.2"

LOCK = (
    "annotated-doc==0.0.6", "annotated-types==0.8.0", "anyio==4.16.0", "certifi==2026.10.19.post1", "click==8.5.1",
    "cloudpickle==3.1.3", "coloredlogs==15.0.1", "contourpy==1.3.2", "cycler==0.12.1", "exceptiongroup==1.3.2",
    "filelock==4.1.0", "flatbuffers==25.12.19", "fonttools==4.65.0", "fsspec==2026.9.0", "graphviz==0.20.1",
    "h11==0.16.0", "hf-xet==1.8.0", "httpcore==1.0.9", "httpx==0.28.1", "huggingface_hub==1.33.0",
    "humanfriendly==10.0", "idna==3.20", "ImageIO==2.38.0", "joblib==1.6.0", "kiwisolver==1.5.1",
    "lazy-loader==0.6", "markdown-it-py==4.3.0", "matplotlib==3.10.9", "mdurl==0.1.2", "mpmath==1.3.0",
    "networkx==3.4.2", "numpy==1.24.3", "onnx==1.14.1", "onnxruntime==1.16.3", "onnxruntime_extensions==0.14.0",
    "onnxsim==0.4.17", "opencv-python-headless==4.8.0.74", "packaging==26.4", "pandas==2.0.3", "Pillow==10.0.0",
    "plotly==5.15.0", "protobuf==3.20.3", "psutil==7.2.2", "pycocotools==2.0.6", "pydantic==2.14.4",
    "pydantic_core==2.50.5", "Pygments==2.21.0", "pyparsing==3.3.3", "python-dateutil==3.0.0", "pytz==2026.6",
    "PyWavelets==1.8.0", "PyYAML==6.0.4", "regex==2026.9.29", "rich==15.0.0", "safetensors==0.8.0",
    "scikit-image==0.21.0", "scikit-learn==1.6.1", "scipy==1.11.1", "shellingham==1.5.4", "six==1.17.0",
    "sympy==1.14.0", "tenacity==9.2.1", "threadpoolctl==3.8.0", "tifffile==2025.5.10", "tokenizers==0.22.2",
    "tomli==2.5.0", "tqdm==4.65.0", "transformers==5.6.2", "typer==0.29.1", "typing-inspection==0.4.5",
    "typing_extensions==4.16.0", "tzdata==2026.6",
)

# The check: the modules of the ONNX path import and a native tool starts, in the environment tpu_mlir sets up for
# its tools (PATH, PYTHONPATH, LD_LIBRARY_PATH are read when a process starts, hence the child processes).
CHECK = """\
import subprocess, sys
import tpu_mlir  # noqa: F401  (sets PATH, PYTHONPATH and LD_LIBRARY_PATH, as its console scripts do)
mods = ["transform.OnnxConverter", "calibration.kld_calibrator", "tools.model_runner", "tools.model_deploy",
        "pyruntime_bm"]
r = subprocess.run([sys.executable, "-c", "import importlib, sys\\nfor m in sys.argv[1:]: importlib.import_module(m)",
                    *mods])
if r.returncode:
    sys.exit("tpu-mlir: the modules of its ONNX path do not import (see above)")
r = subprocess.run(["tpuc-opt", "--version"], capture_output=True, text=True)
print((r.stdout + r.stderr).strip()[:300])
sys.exit(r.returncode)
"""

SOPHON = Toolchain(
    name="sophon",
    title="tpu-mlir",
    python="3.10",
    requirements=(f"tpu_mlir=={TPU_MLIR_VERSION}", "onnx==1.14.1", "onnxruntime==1.16.3", "onnxsim==0.4.17",
                  "psutil==7.2.2"),
    constraints=LOCK,
    fixes=(
        MoveAside(("tpu_mlir/lib/third_party/libc.so.6", "tpu_mlir/lib/third_party/libm.so.6",
                   "tpu_mlir/lib/third_party/libpthread.so.0"),
                  "the wheel bundles glibc 2.35 (Ubuntu 22.04), which breaks every tool on a newer glibc "
                  "(GLIBC_2.36 not found); the host's glibc is used instead"),
        OptionalImport("torch", ("tpu_mlir/python/transform/OnnxOpt.py",
                                 "tpu_mlir/python/calibration/kld_calibrator.py",
                                 "tpu_mlir/python/calibration/simple_tunner.py",
                                 "tpu_mlir/python/calibration/transformer_pattern.py"),
                       "imported at module level but unused on the ONNX path; torch for Python 3.10 on PyPI is the "
                       "CUDA build (several GB), so it is not installed"),
    ),
    check=("-c", CHECK),
    packages=("tpu_mlir", "onnx", "onnxruntime", "numpy", "protobuf"),
    description="Sophgo's tpu-mlir compiler and cmodel simulator (model_transform, run_calibration, model_deploy, "
                "model_runner) for BM1684X / BM1688 / CV186X",
)
