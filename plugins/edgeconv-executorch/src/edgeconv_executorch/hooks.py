"""Hook implementations only: the ``executorch`` target, its two precision passes, the ``.pte`` runner and importer.

Registering imports neither torch nor executorch (``edgeconv targets`` stays fast; a test checks ``sys.modules``):
the work sits behind ``"edgeconv_executorch.<module>:<name>"`` references.

The route: the target accepts the ``torch`` form only. ExecuTorch programs are made from ``torch.export`` graphs;
there is no ONNX -> ExecuTorch converter, so an ONNX or TensorFlow source has no route and is refused by the
core's router before anything runs (exit 2).
"""

from __future__ import annotations

from edgeconv.plugin import Importer, Option, Pass, Requirement, RunnerSpec, Target, hookimpl

EDGECONV_API = "1.0"

HINT = ('pip install "edgeconv[executorch]" (from a checkout: pip install -e "./core[executorch]" '
        "-e ./plugins/edgeconv-executorch)")
EXECUTORCH = Requirement("ExecuTorch (executorch)", HINT, modules=("executorch",))
TORCH = Requirement("PyTorch", 'pip install "edgeconv[torch]"', modules=("torch",))

OPTIONS = (
    Option("delegate", str, "xnnpack",
           "xnnpack: lower every operator XNNPACK supports to it, the rest runs on ExecuTorch's portable kernels; "
           "none: everything on the portable kernels (slow: for a runtime built without XNNPACK)",
           ("xnnpack", "none")),
    Option("per_channel", bool, True, "int8: per-channel weight scales (XNNPACKQuantizer is_per_channel)"),
    Option("calib_limit", int, 100, "int8: at most this many calibration samples through the observers"),
    Option("keep_float", list, (),
           "int8: modules kept in float, by their name in the torch model (layer1.0.conv1; a container keeps "
           "everything in it), or by the ONNX node names torch's TorchScript exporter gives their operators "
           "(/layer1/layer1.0/conv1/Conv): XNNPACKQuantizer does not annotate them (docs/targets/executorch.md)"),
    Option("threads", int, None, "runner: XNNPACK threadpool size stored with the artifact (--threads overrides "
                                 "it for a run)"),
)


@hookimpl
def register_targets(register):
    register(
        Target(
            name="executorch",
            title="ExecuTorch .pte (XNNPACK) for phones and ARM boards",
            suffix=".pte",
            accepts=("torch",),
            artifact_form="pte",
            precisions=("fp32", "fp16", "int8"),
            precision_passes={"fp16": ("executorch.fp16",), "int8": ("executorch.quantize_pt2e",)},
            options=OPTIONS,
            requirements=(TORCH, EXECUTORCH),
            exporter="edgeconv_executorch.export:export",
            precheck="edgeconv_executorch.capture:precheck",
            doctor="edgeconv_executorch.export:doctor",
            devices=("cpu",),
            description="PyTorch sources only (nn.Module, .pt2, file.py:factory --weights; there is no ONNX -> "
                        "ExecuTorch route): torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> "
                        ".pte; INT8 by PT2E with XNNPACKQuantizer; verified with the ExecuTorch runtime",
        )
    )


@hookimpl
def register_passes(register):
    register(Pass(name="executorch.fp16", form="torch", kind="precision", run="edgeconv_executorch.precision:to_fp16",
                  requirements=(TORCH, EXECUTORCH),
                  description="the module in float16 (float32 inputs and outputs cast at its edges), exported"))
    register(Pass(name="executorch.quantize_pt2e", form="torch", kind="precision",
                  run="edgeconv_executorch.precision:quantize_pt2e", requirements=(TORCH, EXECUTORCH),
                  description="PT2E post-training quantization with XNNPACKQuantizer (symmetric int8), calibrated on "
                              "--calib; keep_float modules left unannotated"))


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="pte", name="executorch", factory="edgeconv_executorch.runner:PteRunner",
                        requirements=(EXECUTORCH,),
                        options={"num_threads": int, "input_names": list, "output_names": list},
                        board="edgeconv_executorch.board", tuning="edgeconv_executorch.runner:tuning"))


@hookimpl
def register_importers(register):
    # a .pte on disk as a model: `edgeconv bench model.pte`, `edgeconv inspect model.pte`
    register(Importer(name="executorch", form="pte", suffixes=(".pte",), load="edgeconv_executorch.runner:load_pte",
                      requirements=(EXECUTORCH,)))
