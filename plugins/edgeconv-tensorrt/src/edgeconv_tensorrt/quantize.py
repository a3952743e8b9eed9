"""INT8 by explicit quantization: a QDQ ONNX model made on CPU, in the form TensorRT expects.

TensorRT quantizes symmetrically: INT8 activations and weights, zero point 0 (its "Working with
Quantized Types" guide and the onnx-tensorrt table: ``QuantizeLinear``/``DequantizeLinear``
"zero point must be 0"), weights per output channel. Two quantizers make that model here:

- ``ort`` (default, in this environment): ``onnxruntime.quantization.quantize_static`` in QDQ
  format with ``activation_type=QInt8, weight_type=QInt8, per_channel=True`` and
  ``extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}``
  (biases stay float: TensorRT's DequantizeLinear takes INT8, not INT32), Q/DQ on the inputs of
  Conv/ConvTranspose/Gemm/MatMul only (``-O qdq_placement=trt``: TensorRT's placement
  recommendation; ``all`` quantizes every op onnxruntime can). Symmetric INT8 uses the
  range [-127, 127] (onnxruntime ``ONNX_INT_TYPE_SYMMETRIC_RANGE``); Relu after a quantized op is
  kept (onnxruntime removes it only for asymmetric activations).
- ``modelopt``: NVIDIA Model Optimizer's ONNX PTQ (``python -m modelopt.onnx.quantization``), which
  inserts Q/DQ by TensorRT's placement rules. It pins its own onnx/onnxruntime-gpu, so it runs in an
  environment of its own given by ``-O modelopt_python=/path/to/venv/bin/python``, as an isolated child
  (``python -I -m modelopt.onnx.quantization``, a scratch working folder, no ``PYTHON*`` variables, a timeout).

Either way the QDQ model is then run on onnxruntime (CPU) against the float model it came from,
before any engine is built: the accuracy of the INT8 recipe is known on this machine. This is the work of the
``tensorrt.qdq`` pass (``passes.py``); the exporter only builds from the QDQ model it is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed, ToolchainMissing, keep_float_option

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# Which ops get Q/DQ: "trt" = the inputs of weighted operations (TensorRT's placement
# recommendation, as ModelOpt does), "all" = onnxruntime's default (inputs and outputs of every
# quantizable op).
PLACEMENTS: dict[str, tuple[str, ...]] = {"trt": ("Conv", "ConvTranspose", "Gemm", "MatMul"), "all": ()}
MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
MODELOPT_TIMEOUT = 3600.0  # seconds: ModelOpt's calibration of a large model on CPU


class _Reader:
    """onnxruntime's CalibrationDataReader over an edgeconv Dataset."""

    def __init__(self, dataset, io, limit: int) -> None:
        self._it = iter(dataset.feeds(io, limit=limit))

    def get_next(self):
        item = next(self._it, None)
        return None if item is None else item[0]


def quantize_ort(src: Path, dst: Path, dataset, io, options: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Symmetric INT8 QDQ with onnxruntime's static quantizer."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    limit = int(options.get("calib_limit") or 300)
    method = options.get("calibrate_method") or "minmax"
    if method not in METHODS:
        raise BadInput(f"-O calibrate_method={method!r} must be one of {', '.join(METHODS)}", stage="optimize")
    # No quant_pre_process: the prepared model's shapes are inferred already, onnxruntime's graph
    # optimisations could add com.microsoft ops, and its module imports torch (seconds) for nothing.
    model_in = src
    extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    placement = options.get("qdq_placement") or "trt"
    if placement not in PLACEMENTS:
        raise BadInput(f"-O qdq_placement={placement!r} must be one of {', '.join(PLACEMENTS)}", stage="optimize")
    op_types = PLACEMENTS[placement]
    if op_types:
        # TensorRT's Q/DQ placement recommendation: quantize the inputs of weighted operations, not
        # their outputs; TensorRT fuses each Q into the layer before it.
        extra["OpTypesToExcludeOutputQuantization"] = list(op_types)
    settings = {
        "quantizer": "onnxruntime",
        "quant_format": "QDQ",
        "activation_type": "int8",
        "weight_type": "int8",
        "per_channel": bool(options.get("per_channel", True)),
        "symmetric": True,
        "calibrate_method": method,
        "calibration_samples": min(limit, len(dataset)),
        "nodes_to_exclude": _excluded(options),
        "placement": placement,
        "op_types_to_quantize": list(op_types) or "all",
        "extra_options": extra,
    }
    try:
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quantize_static(
                str(model_in), str(dst), _Reader(dataset, io, limit),
                quant_format=QuantFormat.QDQ,
                per_channel=settings["per_channel"],
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                nodes_to_exclude=settings["nodes_to_exclude"] or None,
                op_types_to_quantize=list(op_types) or None,
                extra_options=extra,
            )
    except Exception as exc:
        raise ToolchainFailed(f"onnxruntime quantize_static failed: {_brief(exc)}", stage="optimize") from None
    keep = keep_float_option(options)
    if keep:
        settings["keep_float"] = keep
        settings["float_inputs_restored"] = _float_inputs(dst, keep)
    return settings


def _excluded(options: dict[str, Any]) -> list[str]:
    """``nodes_to_exclude`` and ``keep_float`` (ONNX node names kept in float)."""
    return list(dict.fromkeys([*(options.get("nodes_to_exclude") or ()), *keep_float_option(options)]))


def _float_inputs(path: Path, keep: list[str]) -> int:
    """The kept nodes read their float inputs, not a Q/DQ'd copy a neighbour asked for (the core's
    onnxruntime translation of keep_float: ``edgeconv.builtins.onnx_passes.float_inputs``)."""
    import onnx

    from edgeconv.plugin import float_inputs

    proto = onnx.load(str(path))
    n = float_inputs(proto, keep)
    onnx.save(proto, str(path))
    return n


def modelopt_command(python: str, src: Path, dst: Path, calib_npz: Path, method: str,
                     nodes_to_exclude: list[str]) -> list[str]:
    """The ModelOpt ONNX PTQ command line (``modelopt/onnx/quantization/__main__.py``), run by an isolated
    interpreter (``python -I -m ...``: nothing from the working folder or ``PYTHON*`` variables)."""
    from .children import python_argv

    args = [f"--onnx_path={src}", "--quantize_mode=int8", f"--calibration_data_path={calib_npz}",
            f"--calibration_method={MODELOPT_METHODS[method]}", "--calibration_eps", "cpu", f"--output_path={dst}"]
    if nodes_to_exclude:
        args += ["--nodes_to_exclude", *nodes_to_exclude]
    return python_argv(python, module="modelopt.onnx.quantization", args=args)


def quantize_modelopt(src: Path, dst: Path, dataset, io, options: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """INT8 QDQ with NVIDIA Model Optimizer, run by the interpreter of an isolated environment."""
    import numpy as np

    python = options.get("modelopt_python") or os.environ.get("EDGECONV_MODELOPT_PYTHON") or ""
    hint = ("make an isolated environment: python3 -m venv ~/.venv-modelopt && ~/.venv-modelopt/bin/pip install "
            "'nvidia-modelopt[onnx]'; then give -O modelopt_python=~/.venv-modelopt/bin/python (or set "
            "EDGECONV_MODELOPT_PYTHON)")
    if not python:
        raise ToolchainMissing("-O quantizer=modelopt needs the Python of an environment with nvidia-modelopt",
                               stage="optimize", hint=hint)
    python = os.path.expanduser(python)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ToolchainMissing(f"the ModelOpt interpreter {python} does not exist", stage="optimize", hint=hint)
    method = options.get("calibrate_method") or "minmax"
    if method not in MODELOPT_METHODS:
        raise BadInput(f"-O calibrate_method={method!r}: ModelOpt calibrates with {', '.join(MODELOPT_METHODS)}",
                       stage="optimize")
    limit = int(options.get("calib_limit") or 300)
    feeds = [feed for feed, _ in dataset.feeds(io, limit=limit)]
    if not feeds:
        raise BadInput("the calibration set holds no samples", stage="optimize")
    calib = scratch / "_modelopt_calib.npz"
    np.savez(calib, **{name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]})
    argv = modelopt_command(python, src, dst, calib, method, _excluded(options))
    from .children import run_child

    try:
        done = run_child(argv, timeout=MODELOPT_TIMEOUT, what="ModelOpt ONNX PTQ", log=scratch / "modelopt.log")
    except ToolchainMissing as exc:
        raise ToolchainMissing(f"ModelOpt ONNX PTQ could not run: {exc.cause}", stage="optimize", hint=hint) from None
    except ToolchainFailed as exc:
        raise ToolchainFailed(f"ModelOpt ONNX PTQ could not run: {exc.cause}", stage="optimize") from None
    if done.returncode != 0:
        raise ToolchainFailed(f"ModelOpt ONNX PTQ failed (exit {done.returncode}): {done.tail(4, 400)}",
                              stage="optimize")
    if not dst.is_file():
        raise ToolchainFailed(f"ModelOpt ONNX PTQ wrote no model at {dst}", stage="optimize")
    return {"quantizer": "modelopt", "argv": argv, "calibrate_method": MODELOPT_METHODS[method],
            "calibration_samples": len(feeds), "symmetric": True}


def summary(proto) -> dict[str, Any]:
    """What the QDQ model holds: Q/DQ counts, quantized types, zero points, per-channel weights."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    ops = Counter(n.op_type for n in proto.graph.node)
    zero_points, zp_types, per_channel, per_tensor, int8_weights, int32_deq = [], set(), 0, 0, 0, 0
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) > 2 and node.input[2] in inits:
            zp = inits[node.input[2]]
            zp_types.add(TensorProto.DataType.Name(zp.data_type))
            zero_points.append(numpy_helper.to_array(zp))
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            x = inits[node.input[0]]
            if x.data_type == TensorProto.INT8:
                int8_weights += 1
                scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
                if scale is not None and scale.size > 1:
                    per_channel += 1
                else:
                    per_tensor += 1
            elif x.data_type == TensorProto.INT32:
                int32_deq += 1
    return {
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "dequantize_nodes": ops.get("DequantizeLinear", 0),
        "zero_point_types": sorted(zp_types),
        "all_zero_points_zero": all(not (z != 0).any() for z in zero_points),
        "int8_weights": int8_weights,
        "per_channel_weights": per_channel,
        "per_tensor_weights": per_tensor,
        "int32_dequantize": int32_deq,
    }


def verify(ref_path: Path, qdq_path: Path, io, data: Any, thresholds: dict[str, float] | None,
           label_output: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The fidelity contract between the float model and its QDQ model, on onnxruntime (CPU).

    The QDQ model runs with graph optimisations off, so Q/DQ execute as written (fake
    quantization): the arithmetic the INT8 recipe defines, not one CPU kernel's rounding.
    """
    from edgeconv.plugin import Model, check_models

    ref = Model(form="onnx", io=io, path=Path(ref_path))
    qdq = Model(form="onnx", io=io, path=Path(qdq_path))
    res = check_models(ref, qdq, data=data, precision="int8", thresholds=thresholds,
                       runner_options={"graph_optimization": "disable"}, label_output=label_output, seed=seed)
    out = {
        "runtime": f"onnxruntime {res['runtime']['artifact'].get('runtime', '').split()[-1]} (CPU, graph "
                   "optimisation off: Q/DQ as written)",
        "reference": "the float ONNX prepared for TensorRT (same graph without Q/DQ)",
        "data": res["data"],
        "thresholds": res["thresholds"],
        "fidelity": res["fidelity"],
        "accuracy": res["accuracy"],
        "pass": res["pass"],
        "warnings": res["warnings"],
    }
    return out


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs "Please consider to run pre-processing ..." on the root logger:
    the prepared model's shapes are inferred already, so drop that advice (and only that)."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing" not in str(record.msg)

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
