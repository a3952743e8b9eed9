"""The plugin module named by the entry point: hook implementations only.

Registering is cheap: the records name the functions that do the work as
``"module:function"`` strings, and nothing heavy (onnx here, a vendor SDK elsewhere)
is imported until a conversion runs.
"""

from edgeconv.plugin import Option, Pass, Requirement, Target, hookimpl

EDGECONV_API = "1.0"  # the plugin API this plugin is written against (edgeconv.plugin.API_VERSION)

ONNX = Requirement("onnx", "pip install onnx", modules=("onnx",))


@hookimpl
def register_targets(register):
    register(
        Target(
            name="example",
            title="ONNX at a pinned opset (example backend)",
            suffix=".onnx",
            accepts=("onnx",),  # the router brings PyTorch / TensorFlow sources to ONNX first
            artifact_form="onnx",  # verified by the runner registered for "onnx" (ONNX Runtime)
            precisions=("fp32",),
            precision_passes={"fp32": ("example.opset",)},  # the passes that make what the exporter writes
            options=(Option("opset", int, 18, "the ONNX opset the artifact declares (7 to the newest this onnx knows)"),),
            requirements=(ONNX,),
            exporter="edgeconv_example.export:export",
            precheck="edgeconv_example.export:precheck",
            doctor="edgeconv_example.export:doctor",
            description="the model as ONNX at a pinned opset, converted with onnx.version_converter",
        )
    )


@hookimpl
def register_passes(register):
    # Every transformation of a model is a pass; the exporter only writes what it is given.
    register(
        Pass(
            name="example.opset",
            form="onnx",
            kind="precision",  # run when a target names it in precision_passes
            run="edgeconv_example.export:to_opset",
            requirements=(ONNX,),
            description="onnx.version_converter to the target's opset, then the full ONNX checker",
        )
    )
