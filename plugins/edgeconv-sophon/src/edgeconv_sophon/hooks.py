"""edgeconv-sophon: the hookimpls only. Nothing heavy is imported here (no onnx, numpy, tpu-mlir): the work sits
behind the lazy references of the records, and tpu-mlir runs in its own environment (``toolchain.py``)."""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Option, Pass, Requirement, RunnerSpec, Target, hookimpl

from .toolchain import SOPHON, TPU_MLIR_VERSION

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (docs/hooks.md)

CHIPS = ("bm1684x", "bm1688", "cv186x")
# edgeconv precision -> model_deploy --quantize
QUANTIZE = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "int8": "INT8"}

# What a .bmodel's manifest may set for the cmodel runner (exactly what the exporter writes): data only.
RUNNER_OPTIONS = {"chip": str, "quantize": str, "tpu_mlir": str, "output_names": list}

TOOLCHAIN = Requirement(
    f"the tpu-mlir {TPU_MLIR_VERSION} toolchain environment (Python 3.10)",
    f"edgeconv toolchain install sophon (or set {SOPHON.setting} to a Python with tpu_mlir, or a container command "
    "ending in one)",
    toolchains=(SOPHON,),
)

OPTIONS = (
    Option("chip", str, "bm1684x", "the Sophon processor model_deploy builds for (--chip)", CHIPS),
    Option("keep_float", list, (), "ONNX node names kept in F32 (comma-separated): written as tpu-mlir's "
                                   "--quantize_table; for INT8/F16/BF16"),
    Option("mean", str, "", "model_transform --mean, per channel 'a,b,c' (tpu-mlir applies it to image inputs: "
                            "test images and image calibration; edgeconv feeds tensors, see docs)"),
    Option("scale", str, "", "model_transform --scale, per channel 'a,b,c' (as --mean)"),
    Option("pixel_format", str, "", "model_transform --pixel_format (as --mean)",
           ("", "rgb", "bgr", "gray", "rgba")),
    Option("channel_format", str, "", "model_transform --channel_format (as --mean)", ("", "nchw", "nhwc", "none")),
    Option("asymmetric", bool, False, "int8: asymmetric quantization (model_deploy --asymmetric)"),
    Option("cali_method", str, "", "int8: run_calibration --cali_method (default: tpu-mlir's)",
           ("", "mse", "max", "kl", "percentile9999", "aciq_laplace", "aciq_gauss")),
    Option("calib_limit", int, 100, "int8: at most this many calibration samples (run_calibration --input_num)"),
    Option("opt", int, 0, "model_deploy --opt optimisation level (0: tpu-mlir's default)", (0, 1, 2, 3)),
    Option("timeout", int, 3600, "seconds each tpu-mlir step may run"),
    Option("device_check", bool, True, "on a Sophon host (bmrt_test on PATH and /dev/bm-sophon*), also run "
                                       "bmrt_test --context_dir on the bmodel (device vs simulator reference)"),
)


@hookimpl
def register_toolchains(register):
    register(SOPHON)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="sophon",
            title=".bmodel for Sophgo Sophon (tpu-mlir)",
            suffix=".bmodel",
            accepts=("onnx",),
            artifact_form="bmodel",
            precisions=("fp16", "fp32", "bf16", "int8"),
            default_precision="fp16",
            options=OPTIONS,
            requirements=(TOOLCHAIN,),
            exporter="edgeconv_sophon.export:export",
            # INT8 calibration is a pass (its table handed to model_deploy); F32/F16/BF16 are model_deploy's flag.
            precision_passes={"int8": ("sophon.calibrate",)},
            doctor="edgeconv_sophon.export:doctor",
            devices=("tpu",),
            description="tpu-mlir (model_transform -> run_calibration -> model_deploy) in an isolated Python 3.10 "
                        "environment; verified in tpu-mlir's cmodel simulator (simulated, not on a device)",
        )
    )


@hookimpl
def register_passes(register):
    register(Pass(name="sophon.calibrate", form="onnx", kind="precision", run="edgeconv_sophon.passes:calibrate",
                  requirements=(TOOLCHAIN,),
                  description="INT8: tpu-mlir's model_transform then run_calibration on --calib (in the sophon "
                              "toolchain environment); the calibration table goes to model_deploy"))


@hookimpl
def register_runners(register):
    register(
        RunnerSpec(
            form="bmodel",
            name="tpu-mlir cmodel",
            factory="edgeconv_sophon.runner:CmodelRunner",
            requirements=(TOOLCHAIN,),
            options=RUNNER_OPTIONS,
            board="edgeconv_sophon.board",  # the board half (docs/boards.md): sophon.sail on the device
            tracer="edgeconv_sophon.trace:TRACER",  # edgeconv debug layers: tpu-mlir's debugger in the cmodel
        )
    )


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_sophon", resource="devices.toml"))
