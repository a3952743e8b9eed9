"""Built-in plugin: the ``onnxruntime`` target (the embedded default) and ONNX runner."""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Option, RunnerSpec, Target, hookimpl

OPTIONS = (
    Option("per_channel", bool, True, "int8: per-channel weight scales"),
    Option("activation_type", str, "uint8", "int8: activation type (uint8: U8S8, the fast path on x86 VNNI)", ("uint8", "int8")),
    Option("weight_type", str, "int8", "int8: weight type", ("int8", "uint8")),
    Option("calibrate_method", str, "minmax", "int8: calibration method", ("minmax", "entropy", "percentile")),
    Option("calib_limit", int, 300, "int8: at most this many calibration samples"),
    Option("nodes_to_exclude", list, (), "int8: node names kept in float (comma-separated)"),
    Option("keep_float", list, (), "int8/fp16: ONNX node names kept in float: excluded from quantization, their inputs "
           "un-quantized (what --precision auto's layer search finds; docs/auto.md)"),
    Option("op_types", list, (), "int8: only quantize these op types (comma-separated)"),
    Option("mixed_range_float", bool, True, "int8: an output Concat whose inputs' ranges differ > 10x (boxes in pixels "
           "and scores in 0..1) and the data movement around it kept in float (false: one scale for the output)"),
    Option("pre_process", bool, True, "int8: run quant_pre_process (shape inference, graph optimisation)"),
    Option("fp16_io", bool, False, "fp16: make the model's inputs and outputs float16 too"),
    Option("graph_optimization", str, "all", "runner: ORT graph optimisation level", ("disable", "basic", "extended", "all")),
)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="onnxruntime",
            title="ONNX Runtime",
            suffix=".onnx",
            accepts=("onnx",),
            artifact_form="onnx",
            precisions=("fp32", "fp16", "int8", "int8-dynamic"),
            options=OPTIONS,
            exporter="edgeconv.builtins.ort_target:export",
            precheck="edgeconv.builtins.ort_target:precheck",
            doctor="edgeconv.builtins.ort_target:doctor",
            precision_passes={
                "fp16": ("onnx.fp16",),
                "int8": ("ort.quantize_static",),
                "int8-dynamic": ("ort.quantize_dynamic",),
            },
            devices=("cpu",),
            description="an optimised/quantized .onnx for ONNX Runtime (CPU execution provider here)",
        )
    )


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="onnx", name="onnxruntime", factory="edgeconv.builtins.ort_runner:OrtRunner",
                        options={"graph_optimization": str, "intra_op_threads": int, "execution_mode": str},
                        board="edgeconv.builtins.ort_board", tuning="edgeconv.builtins.ort_runner:tuning",
                        tracer="edgeconv.builtins.ort_trace:TRACER"))


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv", resource="data/devices.toml"))
