"""PyTorch sources: load safely, export to ONNX, and run eagerly for verification.

Sources (``load``):

- an ``nn.Module`` in the Python API, with ``example_inputs`` (a tensor or tuple) or
  ``--input-shape`` specs;
- ``.pt2``: an ExportedProgram (``torch.export.save``). ``torch.export.load`` unpickles parts of the
  archive without restriction and turns its graph into code, so the archive is checked entry by entry
  first (:mod:`.pt2_scan`): pickles may hold only weights-only data (else ``--trust-pickle``), graph
  operators, symbolic shapes and guards must be on allow-lists, compiled code is refused (else
  ``--trust-code``);
- ``.pt`` / ``.jit``: a TorchScript archive (``torch.jit.save``). Loading one runs its code
  (``__setstate__``), so its code and pickles are scanned first (:mod:`.torchscript_scan`: allowed
  operators only, no file, print or Python operators); anything else needs ``--trust-code``.
  A ``.pt``/``.pth`` that is a *pickled* Python object instead is refused unless ``--trust-pickle``:
  unpickling runs code. A pickled ``state_dict`` is pointed to ``file.py:factory --weights``;
- ``path/to/file.py:factory`` or ``package.module:factory`` with ``--weights`` (a state_dict in
  ``.pt``/``.pth`` read with ``weights_only=True``, or ``.safetensors``). Running the factory
  is the user's explicit choice of code to execute.

Export rule (``torch.to_onnx``): an ExportedProgram goes through the dynamo exporter (the only
one that takes it); a TorchScript module through the TorchScript exporter (the only one that
takes it); a plain ``nn.Module`` through the TorchScript exporter (opset 17: 5-10x faster
here, e.g. ResNet-18 0.9 s vs 6-11 s), falling back to dynamo (opset 20) when it fails.
``--exporter dynamo|torchscript`` forces one. Dynamo's external ``.data`` is inlined for
models under 1.8 GB.

torch's log records and warnings (it logs a traceback when a ``.pt2`` is not in the current layout) go
to the debug log, not the terminal (``edgeconv.plugin.to_debug_log``).

Pruning (``--prune``, ``edgeconv.prune``): the source options ``prune`` (channel ratio),
``finetune`` (a callable given the pruned module), ``prune_data`` (labelled data: accuracy
before/after), ``prune_ignore`` (module names to keep whole) and ``prune_round_to`` prune an
``nn.Module`` source right after it is loaded; what changed is in ``Model.meta["prune"]``, which
the report carries as ``source.meta.prune``. Everything after (export, verification) sees the
pruned module.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, IOContract, Model, Runner, TensorSpec, ToolchainFailed

from .pickle_scan import Refused
from .pt2_scan import check_pt2
from edgeconv.plugin import to_debug_log
from .torchscript_scan import check_torchscript, is_torchscript

SUFFIXES = (".pt2", ".pt", ".jit", ".pth", ".torchscript")
_FACTORY = re.compile(r"^(?P<target>[^:]+\.py|[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)$")


def matches(source: Any) -> bool:
    if isinstance(source, tuple) and source and _is_module(source[0]):
        return True
    if _is_module(source):
        return True
    return isinstance(source, str) and bool(_FACTORY.match(source)) and not Path(source).exists()


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram))


def load(source: Any, *, input_shapes: dict[str, tuple[int, ...]] | None = None, options: dict | None = None) -> Model:
    import torch

    opts = dict(options or {})
    path: Path | None = None
    kind = "module"
    example = opts.get("example_inputs")
    if isinstance(source, tuple):
        source, example = source[0], source[1] if len(source) > 1 else example
    if isinstance(source, (str, Path)) and _FACTORY.match(str(source)) and not Path(source).exists():
        module, kind = _from_factory(str(source), opts), "factory"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        module, kind = _from_file(path, opts)
        if kind == "exported" and example is None:
            example = module.example_inputs[0]
    else:
        module = source
        kind = "exported" if isinstance(module, torch.export.ExportedProgram) else "module"
    where = str(path or source if isinstance(source, (str, Path)) else f"<{type(source).__name__}>")
    names, example = _inputs(example, input_shapes, opts, where)
    try:
        with to_debug_log("torch"):
            runnable = module.module() if kind == "exported" else module
    except Exception as exc:
        raise BadInput(f"the ExportedProgram cannot be made runnable: {_brief(exc)}", file=where, stage="import") from None
    if kind != "exported":  # an ExportedProgram's module is already in inference form
        runnable.eval()
    try:
        with torch.inference_mode(), to_debug_log("torch"):
            out = runnable(*example)
    except Exception as exc:
        raise BadInput(f"the model does not run on inputs {[tuple(x.shape) for x in example]}: "
                       f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", file=where, stage="import") from None
    outs = _flatten(out)
    out_names = list(opts.get("output_names") or (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]))
    dynamic = list(opts.get("dynamic") or [])
    io = IOContract(
        inputs=tuple(_spec(n, x, dynamic) for n, x in zip(names, example)),
        outputs=tuple(_spec(n, y, dynamic) for n, y in zip(out_names, outs)),
    )
    from edgeconv.plugin import guess_layout

    io = IOContract(tuple(TensorSpec(t.name, t.shape, t.dtype, guess_layout(t.shape)) for t in io.inputs), io.outputs)
    meta = {"kind": kind, "torch": torch.__version__, "parameters": int(sum(p.numel() for p in runnable.parameters()))
            if hasattr(runnable, "parameters") else None}
    return Model(form="torch", io=io, path=path, obj={"module": module, "runnable": runnable, "example": example,
                                                     "kind": kind}, meta=meta)


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, dict):
        return [v for v in out.values()]
    if isinstance(out, (list, tuple)):
        return [y for x in out for y in _flatten(x)]
    return [out]


def _spec(name: str, t: Any, dynamic: list[str]) -> TensorSpec:
    shape: list[int | str] = list(t.shape)
    if dynamic and shape:
        shape[0] = dynamic[0]
    return TensorSpec(name, tuple(shape), str(t.dtype).replace("torch.", ""))


def _inputs(example: Any, shapes: dict[str, tuple[int, ...]] | None, opts: dict, where: str) -> tuple[list[str], tuple]:
    import torch

    if example is not None:
        example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
        example = tuple(torch.as_tensor(x) for x in example)
        names = list(opts.get("input_names") or (list(shapes) if shapes and len(shapes) == len(example) else None)
                     or (["input"] if len(example) == 1 else [f"input_{i}" for i in range(len(example))]))
        return names, example
    if not shapes:
        raise BadInput("a PyTorch model needs its input shapes: give --input-shape NAME:1,3,224,224 "
                       "(one per input, in call order)", file=where, stage="import")
    gen = torch.Generator().manual_seed(0)
    return list(shapes), tuple(torch.randn(*s, generator=gen) for s in shapes.values())


def _from_file(path: Path, opts: dict) -> tuple[Any, str]:
    import torch

    if not path.exists():
        raise BadInput("no such file", file=path, stage="import")
    if path.stat().st_size == 0:
        raise BadInput("is empty (0 bytes)", file=path, stage="import")
    if path.suffix == ".pt2":
        _precheck(path, lambda: check_pt2(path, trust_pickle=bool(opts.get("trust_pickle")),
                                          trust_code=bool(opts.get("trust_code"))))
        try:
            with to_debug_log("torch"):
                return torch.export.load(str(path)), "exported"
        except Exception as exc:
            raise BadInput(f"is not a readable ExportedProgram (torch.export.save): {_brief(exc)}", file=path,
                           stage="import") from None
    if not zipfile.is_zipfile(path):
        raise BadInput("is not a TorchScript archive or a torch.save file (not a zip archive)", file=path, stage="import")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if is_torchscript(names):
        if not opts.get("trust_code"):
            _precheck(path, lambda: check_torchscript(path), hint="; give --trust-code if you trust the file")
        try:
            with to_debug_log("torch"):
                return torch.jit.load(str(path), map_location="cpu"), "torchscript"
        except Exception as exc:
            raise BadInput(f"is not a loadable TorchScript archive: {_brief(exc)}", file=path, stage="import") from None
    # A torch.save pickle: a state_dict loads safely; anything else would run code.
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        if not opts.get("trust_pickle"):
            raise BadInput(
                "is a pickled Python object, not TorchScript or a state_dict: loading it would run code from the "
                "file; export it with torch.export.save / torch.jit.save, or give --trust-pickle if you trust it",
                file=path,
                stage="import",
            ) from None
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return obj, "pickled-module"
    raise BadInput("holds weights (a state_dict), not a model: give the code that builds it, as "
                   "file.py:factory --weights " + path.name, file=path, stage="import")


def _precheck(path: Path, check: Any, hint: str = "") -> None:
    """Run a pre-load check (pt2_scan / torchscript_scan): its refusal becomes a one-line BadInput."""
    try:
        check()
    except Refused as exc:
        raise BadInput(f"{exc}{hint}", file=path, stage="import") from None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        # a damaged zip: truncated, encrypted or unknown compression (zipfile raises these)
        raise BadInput(f"is not a readable archive: {_brief(exc)}", file=path, stage="import") from None


def _from_factory(spec: str, opts: dict) -> Any:
    import torch

    m = _FACTORY.match(spec)
    target, attr = m["target"], m["attr"]
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.is_file():
                raise BadInput("no such file", file=file, stage="import")
            mod_spec = importlib.util.spec_from_file_location(f"edgeconv_user_{file.stem}", file)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        factory = module
        for part in attr.split("."):
            factory = getattr(factory, part)
        model = factory()
    except BadInput:
        raise
    except Exception as exc:
        raise BadInput(f"the factory {spec} failed: {_brief(exc)}", file=target, stage="import") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"the factory {spec} returned a {type(model).__name__}, not an nn.Module", file=target, stage="import")
    weights = opts.get("weights")
    if weights:
        state = load_weights(Path(weights))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BadInput(f"the weights do not fit the model: {_brief(exc)}", file=weights, stage="import") from None
    return model


def load_weights(path: Path) -> dict[str, Any]:
    """A state_dict from ``.safetensors`` or a ``.pt``/``.pth`` read with ``weights_only=True``."""
    import torch

    if not path.is_file():
        raise BadInput("no such weights file", file=path, stage="import")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise BadInput(f"is not a readable safetensors file: {_brief(exc)}", file=path, stage="import") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput("is not a plain state_dict (weights_only=True refused it: loading it would run code): "
                       f"{_brief(exc)[:160]}", file=path, stage="import") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInput(f"holds a {type(state).__name__}, not a state_dict", file=path, stage="import")
    return state


def to_onnx(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """torch -> onnx with the exporter chosen by the rule in this module's docstring."""
    import time

    import onnx
    import torch

    from edgeconv.plugin import from_proto

    opts = getattr(job, "source_options", {}) or {}
    kind = model.obj["kind"]
    forced = opts.get("exporter")
    if kind == "exported":
        order = ["dynamo"]
    elif kind == "torchscript":
        order = ["torchscript"]
    else:
        order = [forced] if forced else ["torchscript", "dynamo"]
    if forced and forced not in order:
        raise BadInput(f"--exporter {forced} cannot export a {kind} model (it takes: {', '.join(order)})",
                       stage="convert")
    names = [t.name for t in model.io.inputs]
    out_names = [t.name for t in model.io.outputs]
    dynamic = {t.name: t.dynamic_axes for t in (*model.io.inputs, *model.io.outputs) if t.dynamic_axes}
    errors = []
    for exporter in order:
        path = Path(job.scratch) / f"_torch_{exporter}.onnx"
        opset = int(opts.get("opset") or (17 if exporter == "torchscript" else 20))
        started = time.perf_counter()
        try:
            _export(exporter, model, path, opset, names, out_names, dynamic)
        except Exception as exc:
            errors.append(f"{exporter}: {_brief(exc)}")
            continue
        proto = onnx.load(str(path))  # loads dynamo's external .data too: saved inline later
        out = from_proto(proto, None)
        out.io = _carry_layout(model.io, out.io)
        info = {"exporter": exporter, "opset": opset, "torch": torch.__version__,
                "seconds": round(time.perf_counter() - started, 3), "after": {"nodes": len(proto.graph.node)}}
        pruned = model.meta.get("prune")
        if pruned:
            params = pruned["parameters"]
            job.warn(f"pruned {pruned['ratio']:.0%} of the channels ({params['before']:,} -> {params['after']:,} "
                     "parameters): fidelity compares the artifact with the pruned torch model; the pruning's "
                     "own effect is in source.meta.prune")
            if not pruned.get("finetune"):
                job.warn("pruned without fine-tuning: accuracy usually drops a lot; fine-tune through the Python "
                         "API (source_options={'prune': r, 'finetune': fn})")
        if errors:
            info["fallback_from"] = errors
            job.warn(f"the TorchScript exporter failed; exported with dynamo instead ({errors[0][:160]})")
        return out, info
    raise ToolchainFailed("torch.onnx.export failed: " + " | ".join(errors), stage="convert")


def _carry_layout(src: IOContract, out: IOContract) -> IOContract:
    layouts = {t.name: t.layout for t in src.inputs}
    return IOContract(tuple(TensorSpec(t.name, t.shape, t.dtype, layouts.get(t.name, t.layout)) for t in out.inputs),
                      out.outputs, src.preprocessing)


def _export(exporter: str, model: Model, path: Path, opset: int, names: list[str], out_names: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    import torch

    example = model.obj["example"]
    module = model.obj["module"]
    with to_debug_log("torch", "onnxscript", "onnx_ir"):  # exporter warnings go to the debug log
        if exporter == "torchscript":
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset, input_names=names,
                              output_names=out_names, dynamic_axes=dynamic or None)
            return
        shapes = None
        if dynamic and model.obj["kind"] != "exported":
            dims: dict[str, Any] = {}
            shapes = []
            for n in names:
                axes = dynamic.get(n, {})
                shapes.append({i: dims.setdefault(a, torch.export.Dim(a)) for i, a in axes.items()} or None)
            shapes = tuple(shapes)
        import contextlib
        import io

        # The dynamo exporter prints its progress on stdout, which carries --json reports.
        with contextlib.redirect_stdout(io.StringIO()):
            prog = torch.onnx.export(module, example, dynamo=True, opset_version=opset, input_names=names,
                                     output_names=out_names, dynamic_shapes=shapes, verbose=False)
            prog.save(str(path), external_data=False)


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


class TorchRunner(Runner):
    """The source PyTorch model, eager, on CPU (verification compares against this)."""

    name = "torch-eager"
    modules = ("torch",)

    def __init__(self, model: Model, threads: int | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.threads = threads

    def activate(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        obj = self.model.obj
        if obj is None:  # a fresh process (memory probe): load from the file again
            obj = load(self.model.path).obj
        self.module = obj["runnable"]
        self.names = [t.name for t in self.model.io.inputs] or None
        self.out_names = [t.name for t in self.model.io.outputs]
        self.info = {"runtime": f"torch {torch.__version__} eager", "device": "cpu",
                     "threads": torch.get_num_threads(), "host": "local"}

    def infer(self, feed):
        import torch

        names = self.names or list(feed)
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(feed[n]) for n in names])
        outs = _flatten(out)
        return {n: y.detach().numpy() for n, y in zip(self.out_names, outs)}
