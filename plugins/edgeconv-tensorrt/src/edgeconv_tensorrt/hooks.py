"""edgeconv-tensorrt: the hookimpls only. Nothing heavy is imported here (no tensorrt, CUDA,
onnx, onnxruntime or numpy): the work sits behind the lazy references of the records."""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Option, Pass, Requirement, RunnerSpec, Target, hookimpl

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (docs/hooks.md)

INSTALL_HINT = (
    'pip install "edgeconv[jetson]"; TensorRT itself: JetPack on a Jetson (sudo apt install nvidia-jetpack), '
    "pip install tensorrt on a desktop GPU. To prepare the ONNX/QDQ model and build.json without TensorRT: "
    "edgeconv convert ... --to tensorrt --prepare-only"
)

OPTIONS = (
    Option("prepare_only", bool, False, "write the prepared/QDQ ONNX, build.json and trtexec.sh; build no engine "
                                        "(--prepare-only)"),
    Option("target_trt", str, "auto", "TensorRT version to prepare for: auto (the installed one, else 10.3 = JetPack 6), "
                                      "8.5, 8.6, 10.x, 11.x"),
    Option("builder", str, "auto", "engine builder: the Python API, or trtexec when the module is absent",
           ("auto", "python", "trtexec")),
    Option("trtexec", str, "", "path of trtexec (default: PATH, then /usr/src/tensorrt/bin/trtexec)"),
    Option("workspace_mib", int, 0, "builder workspace limit in MiB (0: TensorRT's default)"),
    Option("timing_cache", str, "", "timing cache file, loaded and saved (default: timing.cache in the output; none)"),
    Option("version_compatible", bool, False, "build a version-compatible plan (runs on newer TensorRT; 8.6+)"),
    Option("exclude_lean_runtime", bool, False, "with version_compatible: leave the lean runtime out of the plan"),
    Option("hardware_compatibility", str, "none", "ampere+: one plan for all GPUs of compute capability 8.0+ "
                                                  "(not on Jetson)", ("none", "ampere+")),
    Option("strongly_typed", bool, False, "strongly typed network: precision from the ONNX types (always on in 11.x)"),
    Option("tf32", bool, False, "allow TF32 for float32 layers (off: fp32 engines compare tightly with the source)"),
    Option("allow_fp16", bool, False, "int8: let the layers without Q/DQ run in FP16 too"),
    Option("opt_level", int, -1, "builder optimization level 0..5 (-1: TensorRT's default, 3)"),
    Option("opset", int, 0, "ONNX opset for TensorRT (0: the model's, moved into the parser's range)"),
    Option("device", int, 0, "CUDA device to build and run on"),
    Option("quantizer", str, "ort", "int8: onnxruntime (here) or NVIDIA ModelOpt (isolated environment)",
           ("ort", "modelopt")),
    Option("modelopt_python", str, "", "int8 with quantizer=modelopt: the Python of an environment with nvidia-modelopt"),
    Option("calibrate_method", str, "minmax", "int8: calibration method", ("minmax", "entropy", "percentile")),
    Option("calib_limit", int, 300, "int8: at most this many calibration samples"),
    Option("per_channel", bool, True, "int8: per-channel weight scales"),
    Option("qdq_placement", str, "trt", "int8: Q/DQ on the inputs of Conv/Gemm/MatMul (TensorRT's recommendation) "
                                        "or on every quantizable op", ("trt", "all")),
    Option("nodes_to_exclude", list, (), "int8: node names kept in float (comma-separated)"),
    Option("keep_float", list, (), "int8/fp16: ONNX node names kept in float32: no Q/DQ around them (tensorrt.qdq), "
           "float32 in the fp16 ONNX of a strongly typed network (tensorrt.fp16), and layer precisions + "
           "OBEY_PRECISION_CONSTRAINTS in the build (what --precision auto's layer search finds)"),
    Option("qdq_data", str, "", "int8: data to verify the QDQ model on CPU (.npz with labels; default: --data when "
                                "the core passes it, else the calibration set)"),
    Option("qdq_limit", int, 500, "int8: at most this many samples for the QDQ check"),
)

TENSORRT = Requirement(
    "TensorRT (the tensorrt Python module or trtexec)",
    INSTALL_HINT,
    modules=("tensorrt",),
    binaries=("trtexec",),
)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="tensorrt",
            title="TensorRT plan for NVIDIA Jetson and GPUs",
            suffix=".plan",
            accepts=("onnx",),
            artifact_form="tensorrt",
            precisions=("fp32", "fp16", "int8"),
            options=OPTIONS,
            requirements=(TENSORRT,),
            exporter="edgeconv_tensorrt.export:export",
            # Every transformation is a pass (passes.py); the exporter writes the build kit and builds the engine.
            precision_passes={"fp32": ("tensorrt.prepare",), "fp16": ("tensorrt.prepare", "tensorrt.fp16"),
                              "int8": ("tensorrt.prepare", "tensorrt.qdq")},
            precheck="edgeconv_tensorrt.precheck:precheck",
            doctor="edgeconv_tensorrt.doctor:doctor",
            devices=("cuda",),
            description="a TensorRT engine (.plan) built from ONNX; INT8 by explicit quantization (a QDQ model "
                        "verified on CPU first); prepare-only on hosts without TensorRT",
        )
    )


@hookimpl
def register_passes(register):
    register(Pass(name="tensorrt.prepare", form="onnx", kind="precision", run="edgeconv_tensorrt.passes:prepare_for_tensorrt",
                  description="the ONNX the target TensorRT parses: opset and IR version in range, shapes set or a "
                              "profile's axes made dynamic (checked on onnxruntime at min and max), build settings"))
    register(Pass(name="tensorrt.fp16", form="onnx", kind="precision", run="edgeconv_tensorrt.passes:fp16",
                  description="strongly typed networks: the ONNX in float16 (IO and keep_float nodes float32); weakly "
                              "typed: nothing (the builder's FP16 flag)"))
    register(Pass(name="tensorrt.qdq", form="onnx", kind="precision", run="edgeconv_tensorrt.passes:qdq",
                  description="INT8 by explicit quantization: the symmetric per-channel QDQ ONNX TensorRT expects "
                              "(onnxruntime or ModelOpt), verified against the float model on onnxruntime (CPU)"))


@hookimpl
def register_runners(register):
    register(
        RunnerSpec(
            form="tensorrt",
            name="tensorrt",
            factory="edgeconv_tensorrt.runner:TRTRunner",
            requirements=(Requirement("the TensorRT Python runtime", INSTALL_HINT, modules=("tensorrt",)),),
            # What a manifest's runner_options may hold (exactly what the exporter writes); nothing is executed.
            options={"engine": dict, "device": int, "prepared_only": bool, "command": str},
            board="edgeconv_tensorrt.board",  # the board half (docs/boards.md): tensorrt + cuda-python on a Jetson
        )
    )


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_tensorrt", resource="devices.toml"))
