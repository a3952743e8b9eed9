"""The ``tflite`` target and the LiteRT runner: registration only.

Nothing heavy is imported here (no tensorflow, onnx2tf or ai_edge_litert): the work sits
behind ``"module:function"`` references, imported when a conversion or a verification runs.
"""

from __future__ import annotations

import edgeconv.plugin
from edgeconv.plugin import DeviceCatalogue, Option, Requirement, RunnerSpec, Target

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (docs/hooks.md)

# What a .tflite's manifest may set for the LiteRT runner (exactly what the exporter writes): data only.
RUNNER_OPTIONS = {"tensor_names": dict, "num_threads": int, "xnnpack": bool}

HINT = 'pip install "edgeconv[tflite]" (from a checkout: pip install -e "./core[tflite]" -e ./plugins/edgeconv-tflite)'

TENSORFLOW = Requirement("TensorFlow (tf.lite.TFLiteConverter)", HINT, modules=("tensorflow",))
LITERT = Requirement("LiteRT (ai-edge-litert)", HINT, modules=("ai_edge_litert",))
# onnx2tf is needed by the ONNX route only: checked when that route runs (export.py).

OPTIONS = (
    Option("io_type", str, "float32",
           "int8: the type of the model's inputs and outputs: float32 (quantize/dequantize inside the model), "
           "or int8/uint8 (the caller quantizes with the scale/zero-point the manifest records)",
           ("float32", "int8", "uint8")),
    Option("int8_fallback", bool, False,
           "int8: ops with no int8 kernel stay float (default: integer-only, and such an op is an error)"),
    Option("calib_limit", int, 200, "int8: at most this many calibration samples in the representative dataset"),
    Option("per_channel", bool, True, "int8, int8-dynamic: per-channel weight scales (false: per-tensor)"),
    Option("select_tf_ops", bool, False,
           "allow TensorFlow ops TFLite has no kernel for (SELECT_TF_OPS); the runtime then needs the Flex delegate"),
    Option("input_layout", str, "auto",
           "onnx route: auto = inputs the source declares NCHW/NCW/NCDHW become channels-last (NHWC...), "
           "the rest keep their shape; source = every input keeps the source's layout (a transpose inside)",
           ("auto", "source")),
    Option("keep_float", list, (), "int8: ONNX node names kept in float (onnx route): their TFLite ops go on the "
           "quantizer's denylist (calibrated, then quantized with TFLite's MLIR quantizer); the model is then int8 "
           "with float fallback for those ops (docs/targets/tflite.md)"),
    Option("mixed_range_float", bool, True, "int8: an output Concat whose inputs' ranges differ > 10x (boxes in pixels "
           "and scores in 0..1) stays float with the data movement around it, each input at its own int8 scale"),
    Option("threads", int, None, "runner: LiteRT interpreter threads (default: --threads, else all cores)"),
    Option("xnnpack", bool, True, "runner: use the XNNPACK delegate LiteRT applies by default"),
    Option("timeout", int, 1800, "onnx route: seconds the onnx2tf worker may run"),
)


@edgeconv.hookimpl
def register_targets(register):
    register(
        Target(
            name="tflite",
            title="TFLite / LiteRT for ARM boards and phones",
            suffix=".tflite",
            accepts=("tf", "onnx"),
            artifact_form="tflite",
            precisions=("fp32", "fp16", "int8-dynamic", "int8"),
            options=OPTIONS,
            requirements=(TENSORFLOW, LITERT),
            exporter="edgeconv_tflite.export:export",
            precheck="edgeconv_tflite.precheck:precheck",
            doctor="edgeconv_tflite.export:doctor",
            devices=("cpu",),
            description="a .tflite flatbuffer: TF/Keras via tf.lite.TFLiteConverter, ONNX/PyTorch via onnx2tf "
                        "(NCHW inputs become NHWC); verified with the LiteRT interpreter",
        )
    )


@edgeconv.hookimpl
def register_runners(register):
    register(RunnerSpec(form="tflite", name="litert", factory="edgeconv_tflite.runner:LiteRTRunner",
                        requirements=(LITERT,), options=RUNNER_OPTIONS, board="edgeconv_tflite.board",
                        tuning="edgeconv_tflite.runner:tuning", tracer="edgeconv_tflite.trace:TRACER"))


@edgeconv.plugin.hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_tflite", resource="devices.toml"))
