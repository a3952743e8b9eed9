"""The plugin module named by the entry point: hook implementations only.

Registering is cheap: the records name the functions that do the work as
``"module:function"`` strings, and nothing heavy (onnx here, a vendor SDK elsewhere)
is imported until a conversion runs.
"""

import edgeconv.plugin
from edgeconv.plugin import Option, Requirement, Target


@edgeconv.hookimpl
def register_targets(register):
    register(
        Target(
            name="example",
            title="ONNX at a pinned opset (example backend)",
            suffix=".onnx",
            accepts=("onnx",),  # the router brings PyTorch / TensorFlow sources to ONNX first
            artifact_form="onnx",  # verified by the runner registered for "onnx" (ONNX Runtime)
            precisions=("fp32",),
            options=(Option("opset", int, 18, "the ONNX opset the artifact declares (7 to the newest this onnx knows)"),),
            requirements=(Requirement("onnx", "pip install onnx", modules=("onnx",)),),
            exporter="edgeconv_example.export:export",
            precheck="edgeconv_example.export:precheck",
            doctor="edgeconv_example.export:doctor",
            description="the model as ONNX at a pinned opset, converted with onnx.version_converter",
        )
    )
