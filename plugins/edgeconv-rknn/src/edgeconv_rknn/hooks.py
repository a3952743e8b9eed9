"""edgeconv-rknn: the hookimpls only. Nothing heavy is imported here (no onnx, numpy, rknn-toolkit2): the work sits
behind the lazy references of the records, and rknn-toolkit2 runs in its own environment (``toolchain.py``)."""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Option, Requirement, RunnerSpec, Target, hookimpl

from .toolchain import RKNN, TOOLKIT_VERSION

EDGECONV_API = "1.0"

# rknn.config(target_platform=...) of rknn-toolkit2 2.5.0 (its docstring lists these).
PLATFORMS = ("rk3588", "rk3576", "rk3566", "rk3568", "rk3562", "rv1106", "rv1106b", "rv1103", "rv1103b", "rv1126b",
             "rk2118")
# RKNNLite.init_runtime(core_mask=...): only RK3588 (3 cores) and RK3576 (2 cores) have more than one NPU core.
CORE_MASKS = ("auto", "0", "1", "2", "0_1", "0_1_2", "all")

TOOLCHAIN = Requirement(
    f"the rknn-toolkit2 {TOOLKIT_VERSION} toolchain environment (Python 3.11)",
    f"edgeconv toolchain install rknn (or set {RKNN.setting} to a Python with rknn-toolkit2)",
    toolchains=(RKNN,),
)

OPTIONS = (
    Option("platform", str, "rk3588", "the Rockchip SoC the model is built for (rknn.config target_platform)",
           PLATFORMS),
    Option("keep_float", list, (), "int8: ONNX node names kept in float16 (comma-separated), through the toolkit's "
                                   "hybrid quantization (custom_quantize_layers)"),
    Option("mean_values", str, "", "per-channel mean folded into the model, in the input's units (e.g. pixels "
                                   "0..255): 'a,b,c' (rknn.config mean_values); the .rknn then takes uint8 input"),
    Option("std_values", str, "", "per-channel std folded into the model (rknn.config std_values), as mean_values"),
    Option("fold_preprocess", bool, False, "take mean_values/std_values from --mean/--std (scaled to pixels)"),
    Option("shape_sets", str, "", "dynamic input: the shape sets the .rknn supports (rknn.config dynamic_input), "
                                  "'1x3x224x224;1x3x320x320' or, for several inputs, 'a:1x3x8x8,b:1x4;a:...'"),
    Option("quantized_algorithm", str, "normal", "int8: rknn.config quantized_algorithm",
           ("normal", "mmse", "kl_divergence")),
    Option("quantized_method", str, "channel", "int8: per-channel or per-layer weights (rknn.config)",
           ("channel", "layer")),
    Option("calib_limit", int, 100, "int8: at most this many calibration samples (one .npy each)"),
    Option("optimization_level", int, 3, "rknn.config optimization_level", (0, 1, 2, 3)),
    Option("accuracy_analysis", bool, True, "run the toolkit's per-layer accuracy_analysis on the test sample and "
                                            "keep it with the report"),
    Option("core_mask", str, "auto", "on a board: the NPU cores RKNNLite runs on (RK3588: 0, 1, 2, 0_1, 0_1_2; "
                                     "RK3576: 0, 1, 0_1)", CORE_MASKS),
    Option("timeout", int, 3600, "seconds each toolkit step may run"),
)


@hookimpl
def register_toolchains(register):
    register(RKNN)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="rknn",
            title=".rknn for Rockchip NPUs (rknn-toolkit2)",
            suffix=".rknn",
            accepts=("onnx",),
            artifact_form="rknn",
            precisions=("fp16", "int8"),
            default_precision="fp16",
            options=OPTIONS,
            requirements=(TOOLCHAIN,),
            exporter="edgeconv_rknn.export:export",
            precheck="edgeconv_rknn.precheck:precheck",
            doctor="edgeconv_rknn.export:doctor",
            devices=("npu",),
            description="rknn-toolkit2 (load_onnx -> build [w8a8, hybrid] -> export_rknn) in an isolated Python 3.11 "
                        "environment; verified in the toolkit's simulator (simulated, not on a device)",
        )
    )


@hookimpl
def register_runners(register):
    register(
        RunnerSpec(
            form="rknn",
            name="rknn",  # the toolkit's simulator here, RKNNLite on a board (board.py)
            factory="edgeconv_rknn.runner:SimulatorRunner",
            requirements=(TOOLCHAIN,),
            options={"platform": str, "precision": str, "toolkit": str, "output_names": list, "recipe": str,
                     "input_formats": list, "core_mask": str},
            board="edgeconv_rknn.board",
            tracer="edgeconv_rknn.trace:TRACER",  # edgeconv debug layers: the toolkit's accuracy_analysis dump
        )
    )


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_rknn", resource="devices.toml"))
