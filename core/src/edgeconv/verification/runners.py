"""Which runner runs a model: the registered runner of its form, here or at a place (a board)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EdgeconvError, ToolchainFailed, ToolchainMissing
from ..records import load_ref
from ..runner import Runner, _arrays

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["Runner", "guard", "make_runner", "runner_for"]


def runner_for(model: Model, *, place: str | None = None, **options: Any) -> Runner:
    """The registered runner for ``model.form``, as the plugin made it: the caller uses the ``Runner`` template's
    ``open()``, ``run(feed)`` and ``close()`` (or ``with``), which turn a runtime's own exception into a one-line
    ``ToolchainFailed`` and keep its traceback for ``--debug``. With ``place`` (a board name, docs/boards.md), the
    runner that runs it there through the runner's board half."""
    from ..plugins import registry

    spec = registry().runners.get(model.form)
    if place is not None:
        from ..places import place_runner

        return place_runner(place, model, spec, options)
    if spec is None:
        raise ToolchainMissing(
            f"no runner is installed for {model.form!r} models",
            file=model.path,
            stage="verify",
        )
    missing = [r for r in spec.requirements if not r.satisfied()]
    if missing:
        raise ToolchainMissing(
            f"running {model.form!r} models needs {missing[0].what}",
            file=model.path,
            stage="verify",
            hint=missing[0].hint,
        )
    return load_ref(spec.factory)(model, **options)


def make_runner(model: Model, *, place: str | None = None, **options: Any) -> Runner:
    """``runner_for`` with ``guard``: for callers that still call the plugin's ``activate()`` and ``infer()``
    directly (the template's ``open``/``run``/``close`` work on it too)."""
    return guard(runner_for(model, place=place, **options))


def guard(runner: Runner) -> Runner:
    """Legacy (use ``Runner.open``/``run``/``close``): make a runtime's own exception (a kernel that fails on these
    inputs, a load that fails) an ``EdgeconvError`` naming the runner, the model and the stage: never an uncaught
    traceback.

    Found by the operator coverage (the ONNX node tests): onnxruntime raised from ``run`` on a
    model it had loaded, and the conversion ended in a traceback."""
    for method in ("activate", "infer"):
        fn = getattr(runner, method)
        if getattr(fn, "_edgeconv_guarded", False):
            continue

        def guarded(*args: Any, _fn: Any = fn, _what: str = method, **kwargs: Any) -> Any:
            if _what == "infer" and args and isinstance(args[0], dict):
                args = (_arrays(args[0]), *args[1:])
            try:
                return _fn(*args, **kwargs)
            except EdgeconvError:
                raise
            except Exception as exc:
                doing = "loading" if _what == "activate" else "running"
                text = " ".join(str(exc).split())
                text = (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
                raise ToolchainFailed(f"{runner.name} failed {doing} the {runner.model.form} model: {text}",
                                      file=runner.model.path, stage="verify") from None

        guarded._edgeconv_guarded = True  # type: ignore[attr-defined]
        setattr(runner, method, guarded)
    return runner
