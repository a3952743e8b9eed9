"""``edgeconv debug``: where an artifact parts from its source (``debug layers``) and the smallest subgraph that still
fails (``debug reduce``); docs/debug.md.

``register(app)`` adds the ``debug`` group to a Typer app (the CLI calls it). Nothing heavy at import: the debug
package, onnx and the runtimes load when a command runs.

Exit codes: 0 no layer misses its gates / the whole model passes (nothing to reduce); 1 a layer diverges / the reduced
model still fails (it was written); 2 bad input; 3 a toolchain (a runtime, a tracer) is missing; 4 the toolchain
failed.
"""

import functools
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (
    SOURCE,
    Opt,
    check_report_path,
    echo_err,
    emit_json,
    guard,
    pairs,
    progress,
    source_options,
    thresholds,
    with_options,
)


def _guarded(fn: Any) -> Any:
    """A command wrapped in the CLI's one-line error guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with guard():
            return fn(*args, **kwargs)

    return wrapper


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _o(*decls: str, help: str, **kw: Any) -> Any:  # noqa: A002
    return typer.Option(*decls, help=help, **kw)


COMMON = (
    Opt("data", Annotated[Optional[Path], _o("--data", help="Samples to trace: .npz keyed by input name, .npy or an image folder (default: random inputs from the IO contract, with a warning).")]),
    Opt("samples", Annotated[Optional[int], _o("--samples", help="How many samples are traced (every tensor of each is held in memory). Default: 8 for layers, 4 for reduce.")]),
    Opt("seed", Annotated[int, _o("--seed", help="Seed for generated data.")], 0),
    Opt("threads", Annotated[Optional[int], _o("--threads", help="Runtime threads.")]),
    Opt("threshold", Annotated[Optional[list[str]], _o("--threshold", help="Override a per-layer gate: NAME=VALUE (cosine, sqnr_db; e.g. cosine=0.99).")]),
    Opt("as_json", Annotated[bool, _o("--json", help="Print the JSON document on stdout.")], False),
)
LAYERS = (
    Opt("report_html", Annotated[Optional[Path], _o("--report", help="Also write the comparison as one self-contained HTML page with the per-layer plot.")]),
    Opt("force", Annotated[bool, _o("--force", help="Replace an existing --report file.")], False),
    Opt("only_failing", Annotated[bool, _o("--only-failing", help="Print only the layers that miss a gate (the verdict lines always).")], False),
    Opt("no_isolated", Annotated[bool, _o("--no-isolated", help="Skip the isolated trace (each layer fed the source's tensors) where the runtime offers one.")], False),
    Opt("trace_dir", Annotated[Optional[Path], _o("--trace-dir", help="Also write the traces (reference, accumulated, isolated) in the common trace format into this folder.")]),
)
REDUCE = (
    Opt("to", Annotated[str, _o("--to", "-t", help="Target name (see `edgeconv targets`).", show_default=False)], ...),
    Opt("precision", Annotated[Optional[str], _o("--precision", "-p", help="Precision of the conversion that fails (default: the target's).")]),
    Opt("option", Annotated[Optional[list[str]], _o("--option", "-O", help="Target option KEY=VALUE (repeatable), as given to convert.")]),
    Opt("calib", Annotated[Optional[str], _o("--calib", help="Calibration data for int8 (each candidate is calibrated on the reference's values at its inputs).")]),
    Opt("check", Annotated[Optional[str], _o("--check", help="Decide with this command instead of a conversion: a candidate fails when it exits non-zero (or does not finish). Run without a shell; {} is the candidate .onnx (appended when absent).")]),
    Opt("timeout", Annotated[float, _o("--timeout", help="Seconds one --check run may take (then it counts as failing).")], 600.0),
    Opt("output", Annotated[Optional[Path], _o("--output", "-o", help="The reduced model (.onnx; its inputs beside it as .npz). Default: ./<model>-<target>-reduced.onnx")]),
    Opt("force", Annotated[bool, _o("--force", help="Replace an existing reduced model.")], False),
)


def layers(source: Annotated[str, typer.Argument(help="The source model (the one the artifact was made from).")],
           artifact_dir: Annotated[Path, typer.Argument(help="An edgeconv output folder (its manifest is read).")],
           opts: dict[str, Any]) -> None:
    """Compare an artifact with its source layer by layer: cosine, SQNR and max-abs per matched tensor, in graph
    order, and the first layer that misses the gates of the artifact's precision."""
    from ..debug import layers as debug_layers
    from ..debug.render import text
    from ..request import source_path

    inputs = tuple(p for p in (source_path(source), artifact_dir) if p is not None)
    check_report_path(opts["report_html"], opts["force"], inputs)
    with progress(not opts["as_json"]) as status:
        doc = debug_layers.layers(source, artifact_dir, data=opts["data"],
                                  samples=_or(opts["samples"], debug_layers.DEFAULT_SAMPLES), seed=opts["seed"],
                                  threads=opts["threads"], isolated=not opts["no_isolated"],
                                  input_shapes=opts["input_shape"], source_options=source_options(opts),
                                  thresholds=thresholds(opts["threshold"]), trace_dir=opts["trace_dir"],
                                  status=status)
    if opts["report_html"] is not None:
        from ..html_report import write_html

        out = write_html(doc, opts["report_html"], force=opts["force"], inputs=inputs)
        echo_err(f"edgeconv: wrote the HTML report {out}")
    if opts["as_json"]:
        emit_json(doc)
    else:
        from .common import clean

        typer.echo(clean(text(doc, only_failing=opts["only_failing"])))
    raise typer.Exit(debug_layers.exit_code(doc))


def reduce(source: Annotated[str, typer.Argument(help="The source model.")], opts: dict[str, Any]) -> None:
    """Bisect the model the target receives to the smallest run of nodes that still fails (the conversion fails to
    verify, the toolchain breaks, or --check exits non-zero), written as ONNX with its inputs: the model a vendor bug
    report needs."""
    from ..debug import reduce as debug_reduce
    from ..errors import EXIT_FAILED

    with progress(not opts["as_json"]) as status:
        doc = debug_reduce.reduce(source, opts["to"], precision=opts["precision"],
                                  options=pairs(opts["option"], "-O"), calibration=opts["calib"], data=opts["data"],
                                  input_shapes=opts["input_shape"], source_options=source_options(opts),
                                  thresholds=thresholds(opts["threshold"]), check=opts["check"],
                                  output=opts["output"], force=opts["force"], samples=_or(opts["samples"], 4),
                                  seed=opts["seed"], timeout=opts["timeout"], threads=opts["threads"], status=status)
    if opts["as_json"]:
        emit_json(doc)
    else:
        from .common import clean

        typer.echo(clean(debug_reduce.summary(doc)))
    raise typer.Exit(EXIT_FAILED if doc["fails"] else 0)


def register(app: typer.Typer) -> None:
    """Add the ``debug`` command group to ``app``."""
    group = typer.Typer(name="debug", no_args_is_help=True,
                        help="Where an artifact parts from its source: layer by layer (layers), and the smallest "
                             "subgraph that still fails (reduce).")
    group.command("layers")(_guarded(with_options(SOURCE, COMMON, LAYERS)(layers)))
    group.command("reduce")(_guarded(with_options(REDUCE, SOURCE, COMMON)(reduce)))
    app.add_typer(group, name="debug")
