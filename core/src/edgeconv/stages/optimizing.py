"""Pre-check and optimize: the target's operator pre-check (fail fast, before the long work), the generic passes of
every form the model passes through, and the precision passes the target names for the requested precision.

The rule for optimize (docs/architecture.md): every transformation of a model is a registered ``Pass``. Generic
passes (``kind="generic"``: simplification, fusion, pruning on the torch form) run on each form before the model
leaves it; precision passes (``kind="precision"``: FP16, INT8 PTQ, a vendor's calibration) run when the target names
them in ``Target.precision_passes``; an exporter only serializes or compiles what it is given.
"""

from __future__ import annotations

from typing import Any

from ..errors import EdgeconvError, ToolchainFailed, ToolchainMissing, UnsupportedOperators
from ..model import Model
from ..plugins import registry
from ..records import Job, Pass, Target, load_ref


def apply(p: Pass, model: Model, job: Job, where: str) -> tuple[Model, dict[str, Any] | None]:
    """Run one pass; returns the new model and its record for the report (name, kind, form, its info), or None when
    the pass had nothing to do (it returned ``info`` None)."""
    miss = [r for r in p.requirements if not r.satisfied()]
    if miss:
        raise ToolchainMissing(f"pass {p.name} needs {miss[0].what}", stage="optimize", hint=miss[0].hint)
    job.status(p.name)
    try:
        out, info = load_ref(p.run)(model, job)
    except EdgeconvError as exc:
        exc.file = exc.file or where
        raise
    except (MemoryError, RecursionError) as exc:
        raise ToolchainFailed(f"pass {p.name} ran out of resources ({type(exc).__name__})", file=where,
                              stage="optimize") from exc
    except Exception as exc:  # a pass's own bug or its library's: one line, the traceback kept for --debug
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ToolchainFailed(f"pass {p.name} failed: {type(exc).__name__}: {text}", file=where,
                              stage="optimize") from exc
    if info is None:
        return out, None
    return out, {"name": p.name, "kind": p.kind, "form": p.form, **info}


def generic_passes(form: str, skip: tuple[str, ...] = ()) -> list[Pass]:
    """The generic passes of ``form`` in registration order (``--skip-pass`` removes some)."""
    return [p for p in registry().passes.values() if p.kind == "generic" and p.form == form and p.name not in skip]


def precision_passes(target: Target, precision: str) -> list[Pass]:
    passes = registry().passes
    out = []
    for name in target.precision_passes.get(precision, ()):
        if name not in passes:
            raise ToolchainMissing(f"target {target.name!r} needs pass {name!r}, which no plugin registers",
                                   stage="optimize")
        out.append(passes[name])
    return out


def precheck(model: Model, target: Target, job: Job, where: str) -> None:
    """The target's pre-check: hard refusals stop the conversion (exit 4) naming the nodes; fallbacks warn."""
    if target.precheck is None:
        return
    found = load_ref(target.precheck)(model, job)
    for u in found:
        if u.fallback:
            job.warn(f"node {u.node} ({u.op_type}) falls back: {u.reason}")
    hard = [(u.node, u.op_type) for u in found if not u.fallback]
    if hard:
        raise UnsupportedOperators(target.name, hard, file=where, stage="precheck")
