"""Built-in plugin: PyTorch sources (importer, torch -> onnx, eager runner). torch is optional."""

from __future__ import annotations

from edgeconv.plugin import Importer, Pass, Requirement, RunnerSpec, hookimpl

TORCH = Requirement("PyTorch", 'pip install "edgeconv[torch]"', modules=("torch",))


@hookimpl
def register_importers(register):
    register(Importer(name="torch", form="torch", suffixes=(".pt2", ".pt", ".jit", ".pth", ".torchscript"),
                      matches="edgeconv.builtins.torch_import:matches", load="edgeconv.builtins.torch_import:load",
                      requirements=(TORCH,)))


@hookimpl
def register_passes(register):
    register(Pass(name="torch.prune", form="torch", run="edgeconv.builtins.torch_prune:prune_pass", reference=True,
                  requirements=(TORCH,), description="--prune: structured channel pruning (torch-pruning), and the "
                  "fine-tune callback; the artifact is verified against the pruned module"))
    register(Pass(name="torch.to_onnx", form="torch", kind="convert", to_form="onnx",
                  run="edgeconv.builtins.torch_import:to_onnx", requirements=(TORCH,),
                  description="torch.onnx.export (TorchScript exporter, dynamo as fallback or for ExportedPrograms)"))


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="torch", name="torch-eager", factory="edgeconv.builtins.torch_import:TorchRunner",
                        requirements=(TORCH,)))
