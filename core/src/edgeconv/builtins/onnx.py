"""Built-in plugin: the ONNX importer and the ONNX passes (no heavy import here)."""

from __future__ import annotations

from edgeconv.plugin import Importer, Pass, hookimpl


@hookimpl
def register_importers(register):
    register(Importer(name="onnx", form="onnx", suffixes=(".onnx",), load="edgeconv.builtins.onnx_import:load"))


@hookimpl
def register_passes(register):
    register(
        Pass(
            name="onnx.simplify",
            form="onnx",
            run="edgeconv.builtins.onnx_passes:simplify",
            description="constant folding, dead-node removal and operator fusion (onnxslim)",
        )
    )
    register(
        Pass(
            name="onnx.fp16",
            form="onnx",
            kind="precision",
            run="edgeconv.builtins.onnx_passes:to_fp16",
            description="weights and compute in float16, IO kept float32 unless fp16_io",
        )
    )
    register(
        Pass(
            name="ort.quantize_static",
            form="onnx",
            kind="precision",
            run="edgeconv.builtins.onnx_passes:quantize_static",
            description="INT8 QDQ with a calibration set (onnxruntime.quantization)",
        )
    )
    register(
        Pass(
            name="ort.quantize_dynamic",
            form="onnx",
            kind="precision",
            run="edgeconv.builtins.onnx_passes:quantize_dynamic",
            description="INT8 weights, activations quantized at run time (onnxruntime.quantization)",
        )
    )
