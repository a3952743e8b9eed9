"""edgeconv-ascend: the hookimpls only. Nothing heavy is imported here (no onnx, onnxruntime, numpy, CANN):
the work sits behind the lazy references of the records."""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Option, Pass, Requirement, RunnerSpec, Target, hookimpl

from .socs import SOCS

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (docs/hooks.md)

INSTALL_HINT = (
    'pip install "edgeconv[ascend]"; CANN itself: install Huawei\'s Ascend-cann-toolkit package and '
    "source /usr/local/Ascend/ascend-toolkit/set_env.sh (CANN 8.5+: /usr/local/Ascend/cann/set_env.sh; non-root: "
    "$HOME/Ascend/...). To prepare the ONNX, AIPP config and ATC command line here without CANN: "
    "edgeconv convert ... --to ascend --prepare-only"
)
RUN_HINT = (
    "running .om models needs an Ascend NPU (driver: /dev/davinci*, npu-smi) and ais_bench: install Huawei's aclruntime "
    "and ais_bench wheels (Ascend/tools, ais-bench_workload/tool/ais_bench) into this Python, or point "
    "EDGECONV_AIS_BENCH_PYTHON at the python3 that has them"
)

V1_MODES = ("force_fp16", "force_fp32", "cube_fp16in_fp32out", "allow_fp32_to_fp16", "must_keep_origin_dtype",
            "allow_mix_precision", "allow_mix_precision_fp16", "allow_mix_precision_bf16", "allow_fp32_to_bf16")
V2_MODES = ("fp16", "origin", "cube_fp16in_fp32out", "mixed_float16", "mixed_bfloat16", "mixed_hif8")

OPTIONS = (
    Option("soc_version", str, "", "the Ascend SoC ATC builds for (required): Ascend<Name> from npu-smi info, e.g. "
                                   "Ascend310B4 (Orange Pi AIpro, Atlas 200I DK A2), Ascend310P3 (Atlas 300I Pro), "
                                   "Ascend910B3", SOCS),
    Option("prepare_only", bool, False, "write the ONNX for ATC, aipp.cfg, atc.json and atc.sh; run no ATC "
                                        "(--prepare-only)"),
    Option("atc", str, "", "path of atc (default: PATH, then $ASCEND_TOOLKIT_HOME/bin, $ASCEND_HOME_PATH/bin)"),
    Option("input_format", str, "auto", "ATC --input_format (auto: NCHW/NHWC from the IO contract, else ND)",
           ("auto", "NCHW", "NHWC", "ND", "NCDHW", "NDHWC")),
    Option("dynamic_batch", list, (), "batch gears for --dynamic_batch_size, e.g. 1,2,4,8 (default: from an "
                                      "--input-shape min,opt,max profile that varies only the batch)"),
    Option("dynamic_image_size", str, "", "image-size gears for --dynamic_image_size, 'H,W;H,W' (NCHW/NHWC inputs)"),
    Option("dynamic_dims", str, "", "gears for --dynamic_dims, 'd1,d2;d1,d2' in the order of the inputs' dynamic "
                                    "axes (ND format)"),
    Option("precision_flag", str, "v1", "pass the precision as --precision_mode (v1, every CANN) or "
                                        "--precision_mode_v2 (v2, CANN 7.0+)", ("v1", "v2")),
    Option("fp32_mode", str, "origin", "-p fp32: origin keeps fp32 where the NPU can (must_keep_origin_dtype / "
                                       "origin), mixed = allow_mix_precision / mixed_float16, cube_fp16in_fp32out, "
                                       "fp32_to_fp16 = allow_fp32_to_fp16 (v1 only)",
           ("origin", "mixed", "cube_fp16in_fp32out", "fp32_to_fp16")),
    Option("precision_mode", str, "", "explicit ATC precision mode (overrides -p's mapping)", tuple(dict.fromkeys(V1_MODES + V2_MODES))),
    Option("out_nodes", str, "", "ATC --out_nodes, 'node:index;node:index' (node names of the ONNX graph)"),
    Option("log", str, "error", "ATC --log level", ("debug", "info", "warning", "error", "null")),
    Option("aipp", bool, False, "insert static AIPP (--insert_op_conf): the .om takes uint8 images and normalises "
                                "with --mean/--std on the NPU"),
    Option("aipp_input", str, "rgb", "AIPP: the image format fed to the .om", ("rgb", "bgr", "yuv420sp", "yvu420sp",
                                                                               "gray")),
    Option("aipp_csc", str, "jpeg", "AIPP, YUV input: the colour standard of the conversion matrix",
           ("jpeg", "bt601-narrow", "bt601-wide", "bt709-narrow", "bt709-wide")),
    Option("aipp_src_size", str, "", "AIPP: W,H of the image fed to the .om (default: the model's input size)"),
    Option("aipp_crop", str, "", "AIPP: crop X,Y,W,H out of the fed image; W,H must be the model's input size"),
    Option("aipp_resize", str, "", "AIPP resize: not supported by static AIPP (refused with the reason)"),
    Option("precheck", str, "strict", "operator pre-check: strict refuses nodes outside ATC's documented ONNX support; "
                                      "warn only warns; off skips it", ("strict", "warn", "off")),
    Option("atc_precheck", bool, True, "when atc is installed, also run atc --mode=3 (ATC's own pre-check)"),
    Option("timeout", int, 0, "seconds to wait for ATC (0: no limit)"),
    Option("extra_args", str, "", "more ATC arguments, passed literally: '--name=value ...' (shell-style quoting) or "
                                  "a JSON list of strings; only documented ATC parameters edgeconv does not set"),
    Option("device", int, 0, "Ascend device id for ais_bench (verify, bench)"),
    Option("runner", str, "auto", "ais_bench in-process (python: ais_bench.infer.interface.InferSession) or "
                                  "python3 -I -m ais_bench (cli; the interpreter is $EDGECONV_AIS_BENCH_PYTHON on the "
                                  "host that runs the .om, else python3)", ("auto", "python", "cli")),
    Option("calib_limit", int, 300, "int8: at most this many calibration samples"),
    Option("keep_float", list, (), "ONNX node names kept in float32: written to keep_dtype.cfg and passed to ATC as "
           "--keep_dtype, and with int8 skipped by AMCT (ascend.amct) too (what --precision auto's layer search "
           "finds)"),
    Option("amct_skip_layers", list, (), "int8: node names AMCT keeps in float (comma-separated)"),
    Option("amct_activation_offset", bool, True, "int8: asymmetric activations (AMCT activation_offset)"),
    Option("amct_python", str, "", "int8: run AMCT in this interpreter (an environment with amct_onnx; isolated, "
                                   "-I) instead of in-process (default: $EDGECONV_AMCT_PYTHON)"),
)

# What an .om's manifest may set for the ais_bench runner (exactly what the exporter writes): data, never a path to run.
RUNNER_OPTIONS = {"device": int, "runner": str, "soc_version": str, "input_names": list, "output_names": list,
                  "input_layouts": list, "aipp": dict, "dynamic": dict, "prepared_only": bool, "command": str}

CANN = Requirement(
    "Huawei CANN toolkit (atc)",
    INSTALL_HINT,
    binaries=("atc",),
    env=("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"),
)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="ascend",
            title=".om for Huawei Ascend NPUs (ATC)",
            suffix=".om",
            accepts=("onnx",),
            artifact_form="om",
            precisions=("fp16", "fp32", "int8"),
            default_precision="fp16",  # the NPU's native precision, ATC's own default
            options=OPTIONS,
            requirements=(CANN,),
            exporter="edgeconv_ascend.export:export",
            # INT8 is a pass (AMCT's deploy model); fp16/fp32 are ATC's --precision_mode, set by the exporter.
            precision_passes={"int8": ("ascend.amct",)},
            precheck="edgeconv_ascend.precheck:precheck",
            doctor="edgeconv_ascend.cann:doctor",
            devices=("npu",),
            description="an offline model (.om) built by ATC from ONNX; optional static AIPP (uint8 images in), INT8 "
                        "through AMCT, verified with ais_bench on an Ascend host; prepare-only without CANN",
        )
    )


@hookimpl
def register_passes(register):
    register(Pass(name="ascend.amct", form="onnx", kind="precision", run="edgeconv_ascend.passes:amct",
                  description="INT8 through AMCT (amct_onnx, in-process or -O amct_python): AMCT's deploy model for "
                              "ATC, its fake-quant model checked against the float model on onnxruntime (CPU); "
                              "keep_float nodes skipped"))


@hookimpl
def register_runners(register):
    register(
        RunnerSpec(
            form="om",
            name="ais_bench",
            factory="edgeconv_ascend.runner:AisBenchRunner",
            requirements=(Requirement("ais_bench on an Ascend host", RUN_HINT, modules=("ais_bench",),
                                      env=("EDGECONV_AIS_BENCH_PYTHON",)),),
            options=RUNNER_OPTIONS,
            board="edgeconv_ascend.board",  # the board half (docs/boards.md): ais_bench InferSession
        )
    )


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_ascend", resource="devices.toml"))
