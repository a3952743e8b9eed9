"""Built-in plugin: TensorFlow / Keras sources (importer, tf -> onnx via tf2onnx, TF runner)."""

from __future__ import annotations

from edgeconv.plugin import Importer, Pass, Requirement, RunnerSpec, hookimpl

TF = Requirement("TensorFlow", 'pip install "edgeconv[tensorflow]"', modules=("tensorflow",))
TF2ONNX = Requirement("tf2onnx", 'pip install "edgeconv[tensorflow]"', modules=("tf2onnx",))


@hookimpl
def register_importers(register):
    register(Importer(name="tensorflow", form="tf", suffixes=(".keras", ".h5", ".hdf5"),
                      matches="edgeconv.builtins.tf_import:matches", load="edgeconv.builtins.tf_import:load",
                      requirements=(TF,)))


@hookimpl
def register_passes(register):
    register(Pass(name="tf.to_onnx", form="tf", kind="convert", to_form="onnx",
                  run="edgeconv.builtins.tf_import:to_onnx", requirements=(TF, TF2ONNX),
                  description="tf2onnx on the SavedModel's serving signature (Keras 3 models exported first)"))


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="tf", name="tensorflow", factory="edgeconv.builtins.tf_import:TFRunner",
                        requirements=(TF,)))
