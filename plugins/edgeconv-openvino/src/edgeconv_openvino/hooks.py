"""Hook implementations only: the ``openvino`` target record and the IR runner.

Registering imports neither openvino nor nncf (``edgeconv targets`` must stay fast and
light); the work sits behind ``"edgeconv_openvino.<module>:<name>"`` references.
"""

from __future__ import annotations

from edgeconv.plugin import DeviceCatalogue, Importer, Option, Requirement, RunnerSpec, Target, hookimpl

HINT = 'pip install "edgeconv[openvino]" (from a checkout: pip install -e "./core[openvino]" -e ./plugins/edgeconv-openvino)'
OPENVINO = Requirement("OpenVINO", HINT, modules=("openvino",))

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (docs/hooks.md)

# What an IR's manifest may set for the runner (exactly what the exporter writes): data, nothing to execute.
RUNNER_OPTIONS = {"device": str, "precision_hint": str, "performance_hint": str, "num_streams": str,
                  "inference_num_threads": int}

OPTIONS = (
    # where it runs, and how (all recorded in the manifest's runner_options)
    Option("device", str, "CPU", "OpenVINO device to pre-check, quantize for and verify on: CPU, GPU, GPU.1, NPU, ..."),
    Option("precision_hint", str, "auto", "runtime INFERENCE_PRECISION_HINT; auto: f32 for fp32/fp16/int8 on CPU, "
           "bf16 for bf16, f16 for fp16 on GPU/NPU (docs/targets/openvino.md)", ("auto", "f32", "bf16", "f16")),
    Option("performance_hint", str, "latency", "runtime PERFORMANCE_HINT", ("latency", "throughput", "cumulative_throughput")),
    Option("streams", str, None, "runtime NUM_STREAMS: a number or auto (default: from the performance hint)"),
    Option("threads", int, None, "runtime INFERENCE_NUM_THREADS stored with the artifact (--threads overrides it for a run)"),
    Option("plain_load", str, "verdict", "a plain compile_model(xml) that computes in another precision than the "
           "verified one is verified too; verdict: its failure fails the conversion; warn: only warn (your deployment "
           "passes the properties edgeconv prints)", ("verdict", "warn")),
    # INT8 (NNCF post-training quantization)
    Option("subset_size", int, 300, "int8: calibration samples NNCF uses (at most)"),
    Option("preset", str, "auto", "int8: NNCF preset; auto: performance for CNNs, mixed for transformers",
           ("auto", "performance", "mixed")),
    Option("model_type", str, "auto", "int8: NNCF model type; auto: transformer when the graph has attention",
           ("auto", "transformer", "none")),
    Option("bias_correction", str, "auto", "int8: auto: full below 1M parameters, fast above; none disables it",
           ("auto", "fast", "full", "none")),
    Option("ignored_names", list, (), "int8: node names kept in float (comma-separated, OpenVINO node names)"),
    Option("ignored_types", list, (), "int8: op types kept in float (comma-separated, e.g. MatMul,Softmax)"),
    Option("keep_float", list, (), "int8: ONNX node names kept in float (comma-separated; mapped to OpenVINO op "
           "names for NNCF's ignored scope; what --precision auto's sensitive-layer search finds)"),
    Option("mixed_range_float", bool, True, "int8: an output Concat whose inputs' ranges differ > 10x (boxes in pixels "
           "and scores in 0..1) goes into NNCF's ignored scope with the data movement around it (ONNX sources)"),
    Option("accuracy_control", bool, True, "int8: use nncf.quantize_with_accuracy_control when labelled --data "
           "and --max-accuracy-drop are given"),
)


@hookimpl
def register_importers(register):
    # an IR on disk as a source: `edgeconv bench model.xml`, `edgeconv inspect model.xml`
    register(Importer(name="openvino", form="openvino", suffixes=(".xml",), load="edgeconv_openvino.runner:load_ir",
                      requirements=(OPENVINO,)))


@hookimpl
def register_targets(register):
    register(
        Target(
            name="openvino",
            title="OpenVINO IR for Intel CPUs, GPUs and NPUs",
            suffix=".xml",
            accepts=("onnx", "torch", "tf"),
            artifact_form="openvino",
            precisions=("fp32", "fp16", "bf16", "int8"),
            options=OPTIONS,
            requirements=(OPENVINO,),
            exporter="edgeconv_openvino.export:export",
            precheck="edgeconv_openvino.precheck:precheck",
            doctor="edgeconv_openvino.export:doctor",
            devices=("cpu", "gpu", "npu"),
            description="OpenVINO IR (.xml + .bin) via openvino.convert_model; INT8 with NNCF",
        )
    )


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="openvino", name="openvino", factory="edgeconv_openvino.runner:OVRunner",
                        requirements=(OPENVINO,), options=RUNNER_OPTIONS, tuning="edgeconv_openvino.runner:tuning",
                        board="edgeconv_openvino.board",
                        tracer="edgeconv_openvino.trace:TRACER"))


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_openvino", resource="devices.toml"))
