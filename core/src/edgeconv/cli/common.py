"""What every command shares: clean errors with the documented exit codes, terminal output that a model's names
cannot hijack, progress, and the option groups that are parsed once into a request."""

import contextlib
import functools
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import EXIT_TOOLCHAIN, BadInput, EdgeconvError

STATE = {"debug": bool(os.environ.get("EDGECONV_DEBUG")), "terminated": False}

# C0 and C1 control characters (ESC starts the ANSI sequences that clear a screen or fake a line), except tab and
# newline: a model's node, op or output names reach the terminal, and are data.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: Any) -> str:
    """``text`` without control characters (shown as ``\\xNN``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def safe(text: Any) -> str:
    """``text`` for rich: control characters made visible, markup (``[/]``, ``[link=...]``) escaped."""
    from rich.markup import escape

    return escape(clean(text))


def echo_err(message: str) -> None:
    typer.echo(clean(message), err=True)


def error(message: str) -> None:
    echo_err(f"edgeconv: error: {' '.join(message.split())}")


def _traceback() -> None:
    if STATE["debug"]:
        import traceback

        traceback.print_exc()


@contextlib.contextmanager
def guard(interrupted: str = "; no output was written") -> Iterator[None]:
    """One-line errors with the documented exit code; a traceback (the cause's too) only with --debug.
    ``interrupted``: what the line says after "interrupted" on Ctrl-C."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except EdgeconvError as exc:
        _traceback()
        error(exc.one_line())
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        error(f"interrupted{interrupted}")
        raise typer.Exit(130) from None
    except Exception as exc:
        if STATE["terminated"]:  # SIGTERM landed inside a C extension (e.g. during an import)
            error(f"interrupted{interrupted}")
            raise typer.Exit(130) from None
        _traceback()
        text = " ".join(str(exc).split())[:300]
        error(f"internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)")
        raise typer.Exit(EXIT_TOOLCHAIN) from None


def console(stderr: bool = False):
    """A rich console that never truncates: piped or narrow, long cells wrap (the verdict is never "pa…")."""
    from rich.console import Console

    width = None if sys.stdout.isatty() or stderr else 160
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=False)


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the running stage (none with --json or off a TTY)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda msg: None
        return
    with console(stderr=True).status("starting") as status:
        yield lambda msg: status.update(f"[bold]{safe(msg)}[/]")


def emit_json(doc: Any) -> None:
    from ..report import dumps

    typer.echo(dumps(doc, indent=2))


# -- option groups: declared once, added to every command that takes them, parsed once into a request -----------------
@dataclass(frozen=True)
class Opt:
    name: str
    annotation: Any
    default: Any = None


def with_options(*groups: tuple[Opt, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of ``groups`` to a command: Typer sees them in the signature; the command receives them as
    one dict ``opts``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        added = [o for g in groups for o in g]
        extra = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.annotation)
                 for o in added]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            opts = {o.name: kwargs.pop(o.name, o.default) for o in added}
            return fn(**kwargs, opts=opts)

        wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        return wrapper

    return deco


def _o(*decls: str, help: str, **kw: Any) -> Any:  # noqa: A002
    return typer.Option(*decls, help=help, **kw)


SOURCE = (
    Opt("input_shape", Annotated[Optional[list[str]], _o("--input-shape", help="Pin an input's dynamic axes: NAME:1,3,224,224 (repeatable; NAME:AxBxC,... gives min,opt,max).")]),
    Opt("source_form", Annotated[Optional[str], _o("--from", help="Source format when the suffix does not tell.")]),
    Opt("weights", Annotated[Optional[Path], _o("--weights", help="PyTorch factory sources: a state_dict (.safetensors, or .pt/.pth read with weights_only=True).")]),
    Opt("trust_pickle", Annotated[bool, _o("--trust-pickle", help="Allow unpickling beyond weights-only data: a pickled PyTorch model, .pt2 payloads (runs code from the file; docs/security.md).")], False),
    Opt("trust_code", Annotated[bool, _o("--trust-code", help="Load a model whose code edgeconv cannot check: Keras Lambda layers, TorchScript, SavedModel ops or .pt2 graph code outside the allow-lists, compiled code (runs code from the file; docs/security.md).")], False),
    Opt("dynamic", Annotated[Optional[list[str]], _o("--dynamic", help="Name a dynamic batch axis for framework sources, e.g. --dynamic batch.")]),
    Opt("exporter", Annotated[Optional[str], _o("--exporter", help="PyTorch -> ONNX exporter: torchscript or dynamo (default: by rule, see docs).")]),
    Opt("opset", Annotated[Optional[int], _o("--opset", help="ONNX opset for framework sources.")]),
)
DATA = (
    Opt("data", Annotated[Optional[Path], _o("--data", help="Verification data: .npz keyed by input name (+ 'labels'), .npy or an image folder. Default: drawn from --calib, else generated from the IO contract.")]),
)
CHECKS = (
    Opt("threshold", Annotated[Optional[list[str]], _o("--threshold", help="Override a fidelity threshold: NAME=VALUE (names: edgeconv targets --metrics; e.g. cosine=0.99).")]),
    Opt("task", Annotated[Optional[str], _o("--task", help="A task check that also decides: classification, detection, ctc, segmentation (edgeconv inspect suggests one).")]),
    Opt("state", Annotated[Optional[list[str]], _o("--state", help="A streaming model's carried state: INPUT:OUTPUT (repeatable); --data then has a time axis.")]),
    Opt("label_output", Annotated[Optional[str], _o("--label-output", help="Output holding class scores for accuracy (default: the first).")]),
    Opt("verify_samples", Annotated[Optional[int], _o("--verify-samples", help="Verify on at most N samples (for slow simulators).")]),
    Opt("threads", Annotated[Optional[int], _o("--threads", help="Runtime threads for verification and latency.")]),
    Opt("runs", Annotated[int, _o("--runs", help="Timed inferences after warm-up.")], 50),
    Opt("seed", Annotated[int, _o("--seed", help="Seed for generated data.")], 0),
    Opt("on", Annotated[Optional[list[str]], _o("--on", metavar="BOARD", help="Run the artifact on this board (edgeconv boards list; docs/boards.md); verify: repeat it to compare places side by side ('local' is this host).")]),
)
BUDGETS = (
    Opt("max_size", Annotated[Optional[str], _o("--max-size", help="Budget: artifact size, e.g. 25MB.")]),
    Opt("max_latency", Annotated[Optional[str], _o("--max-latency", help="Budget: p50 latency, e.g. 100ms.")]),
    Opt("max_accuracy_drop", Annotated[Optional[str], _o("--max-accuracy-drop", help="Budget: accuracy drop in percentage points (top-1 disagreement without labels).")]),
)
REPORT = (
    Opt("as_json", Annotated[bool, _o("--json", help="Print the JSON report on stdout.")], False),
    Opt("report_html", Annotated[Optional[Path], _o("--report", help="Also write the report as one self-contained HTML page to this path (never over an existing file without --force).")]),
)


def pairs(values: list[str] | None, what: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for item in values or []:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise BadInput(f"{what} {item!r} is not KEY{sep}VALUE", stage="options")
        out[key.strip()] = value.strip()
    return out


def source_options(opts: dict[str, Any]) -> dict[str, Any]:
    if opts.get("exporter") not in (None, "dynamo", "torchscript"):
        raise BadInput(f"--exporter {opts['exporter']!r} must be dynamo or torchscript", stage="options")
    if opts.get("opset") is not None:
        from ..request import check_int

        check_int("--opset", opts["opset"], 7, 30)
    keys = ("weights", "trust_pickle", "trust_code", "dynamic", "exporter", "opset")
    return {k: opts[k] for k in keys if opts.get(k)}


def thresholds(values: list[str] | None) -> dict[str, float]:
    """``--threshold NAME=VALUE``: a metric of the table (``edgeconv.verification.metrics``) and a number."""
    from ..verification.metrics import parse_thresholds

    return parse_thresholds(values)


def check_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The verification options as the API takes them (thresholds checked against the metric table)."""
    return {"thresholds": thresholds(opts.get("threshold")), "task": opts.get("task"),
            "state": pairs(opts.get("state"), "--state", ":"), "label_output": opts.get("label_output"),
            "verify_samples": opts.get("verify_samples"), "threads": opts.get("threads"), "runs": opts["runs"],
            "seed": opts["seed"], "place": _one_place(opts.get("on"))}


def _one_place(on: list[str] | None) -> str | None:
    if not on:
        return None
    if len(on) > 1:
        raise BadInput("--on names one board here (edgeconv verify takes several to compare them)", stage="options")
    return None if on[0] in ("local", "here", "host") else on[0]


def budgets(opts: dict[str, Any]):
    from ..report import Budgets

    return Budgets.parse(opts.get("max_size"), opts.get("max_latency"), opts.get("max_accuracy_drop"))


def check_report_path(path: Path | None, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Before any long work: the HTML report needs matplotlib (exit 3 with the hint if absent), and its path must
    be free (or ``--force``) and not an input."""
    if path is None:
        return
    from ..html_report import require_plotting
    from ..output import check_not_an_input

    require_plotting()
    check_not_an_input(path, inputs, what="the --report path")
    if path.exists() and (path.is_dir() or not force):
        raise BadInput("the --report file exists; give --force to replace it" if not path.is_dir()
                       else "the --report path is a folder", file=path, stage="output")


def write_report(path: Path | None, doc: dict[str, Any], force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    if path is None:
        return
    with guard():
        from ..html_report import write_html

        out = write_html(doc, path, force=force, inputs=inputs)
    echo_err(f"edgeconv: wrote the HTML report {out}")
