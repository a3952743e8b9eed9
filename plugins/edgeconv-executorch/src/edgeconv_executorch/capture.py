"""The torch source as an ``ExportedProgram``: ExecuTorch's starting point, made once per job.

The pre-check captures the model with ``torch.export`` (so that a model torch.export cannot trace fails before
any calibration) and keeps the program in ``job.state``; the precision passes and the exporter reuse it.

What is captured (the torch form's ``obj``, from the core's torch importer):

- ``module`` / ``factory`` / ``pickled-module`` kinds: ``torch.export.export(runnable, example)``, the module in
  eval mode at the example's shapes;
- ``exported`` (a ``.pt2``): the ExportedProgram as it is, unless an input has a symbolic dimension: then it is
  exported again from its module at the example's shapes (ExecuTorch plans its memory ahead of time; a .pte
  with dynamic shapes needs upper bounds this target does not ask for yet);
- ``torchscript``: refused. torch.export cannot read a TorchScript archive.
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import BadInput, Model, ToolchainFailed, Unsupported, brief, keep_float_option

EXPORTED = "executorch.exported"  # job.state keys (this plugin's own)
KEEP = "executorch.keep_float"


def precheck(model: Model, job: Any) -> list[Unsupported]:
    """Capture the model now (fail fast), and check keep_float's names against it."""
    ep = exported(model, job)
    names = keep_float_option(job.options)
    if names and job.precision != "int8":
        job.warn(f"keep_float applies to int8 on this target; ignored at {job.precision}")
    elif names:
        from .keep import resolve

        job.state[KEEP] = resolve(names, ep, job)
    return []


def exported(model: Model, job: Any) -> Any:
    """The job's ExportedProgram of the source (made on first use)."""
    if EXPORTED in job.state:
        return job.state[EXPORTED]
    import torch

    obj = model.obj or {}
    kind = obj.get("kind")
    if kind == "torchscript":
        raise BadInput("is a TorchScript archive: ExecuTorch starts from torch.export, which cannot read "
                       "TorchScript; save the model with torch.export.save (.pt2) or give the code that builds it "
                       "(file.py:factory --weights)", file=where(model), stage="precheck")
    example = tuple(obj["example"])
    source = obj["module"]
    if kind == "exported" and not _symbolic_inputs(source):
        ep = source
    else:
        module = source.module() if kind == "exported" else obj["runnable"]
        if kind == "exported":
            job.warn("the .pt2 has dynamic input dimensions; the .pte is built for the example's shapes "
                     f"{[list(x.shape) for x in example]}")
        try:
            ep = export_program(torch, module, example)
        except Exception as exc:
            raise ToolchainFailed(f"torch.export cannot capture the model (ExecuTorch needs a graph torch.export "
                                  f"can trace): {brief(exc)}", file=where(model), stage="precheck") from None
    if any(t.dynamic_axes for t in model.io.inputs):
        shapes = ", ".join(f"{t.name}{list(x.shape)}" for t, x in zip(model.io.inputs, example, strict=True))
        job.warn(f"the .pte is built for fixed input shapes {shapes}: its dynamic axes are pinned to the "
                 "example's sizes")
    job.state[EXPORTED] = ep
    return ep


def export_program(torch: Any, module: Any, example: tuple) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(module, example)


def _symbolic_inputs(ep: Any) -> bool:
    users = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            val = node.meta.get("val")
            if val is not None and any(not isinstance(d, int) for d in getattr(val, "shape", ())):
                return True
    return False


def where(model: Model) -> str | None:
    """The source file, for error messages (None for a module given in the Python API)."""
    path = model.path or model.meta.get("source_path")
    return str(path) if path else None


def example_of(model: Model) -> tuple:
    return tuple(model.obj["example"])
