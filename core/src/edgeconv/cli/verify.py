"""``edgeconv verify`` (an artifact against its source, again) and ``edgeconv bench`` (latency and memory)."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (
    BUDGETS,
    CHECKS,
    DATA,
    REPORT,
    SOURCE,
    Opt,
    budgets,
    check_options,
    check_report_path,
    emit_json,
    guard,
    source_options,
    with_options,
    write_report,
)
from .render import emit

PRECISION = (Opt("precision", Annotated[Optional[str], typer.Option("--precision", help="Thresholds of this precision (default: from the manifest).")]),
             Opt("force", Annotated[bool, typer.Option("--force", help="Replace an existing --report file.")], False),
             Opt("no_memory", Annotated[bool, typer.Option("--no-memory", help="Skip the peak-memory measurement.")], False))


def register(app: typer.Typer) -> None:
    @app.command()
    @with_options(PRECISION, SOURCE, DATA, CHECKS, BUDGETS, REPORT)
    def verify(source: Annotated[str, typer.Argument(help="The source model (the one the artifact was made from).")],
               artifact: Annotated[Path, typer.Argument(help="An edgeconv output folder, or a model file.")],
               opts: dict[str, Any]) -> None:
        """Verify an existing artifact against its source (the fidelity contract)."""
        with guard():
            from ..api import verify as run_verify
            from ..request import source_path

            inputs = tuple(p for p in (source_path(source), artifact) if p is not None)
            check_report_path(opts["report_html"], opts["force"], inputs)
            places = list(opts.get("on") or [])
            if len(places) > 1:
                opts = {**opts, "on": None}
            result = run_verify(source, artifact, data=opts["data"], precision=opts["precision"],
                                input_shapes=opts["input_shape"], budgets=budgets(opts),
                                source_form=opts["source_form"], source_options=source_options(opts),
                                memory=not opts["no_memory"], **check_options(opts),
                                **({"places": places} if len(places) > 1 else {}))
        write_report(opts["report_html"], result.report, opts["force"], inputs)
        emit(result, opts["as_json"])

    @app.command()
    def bench(
        model: Annotated[str, typer.Argument(help="A model file or an edgeconv output folder.")],
        runs: Annotated[int, typer.Option("--runs", help="Timed inferences after warm-up.")] = 100,
        warmup: Annotated[int, typer.Option("--warmup", help="Inferences before timing.")] = 10,
        threads: Annotated[Optional[int], typer.Option("--threads", help="Runtime threads.")] = None,
        input_shape: Annotated[Optional[list[str]], typer.Option("--input-shape", help="Pin an input's dynamic axes: NAME:1,3,224,224.")] = None,
        data: Annotated[Optional[Path], typer.Option("--data", help="A sample to time (.npz keyed by input name).")] = None,
        on: Annotated[Optional[str], typer.Option("--on", help="Run it on this board (docs/boards.md).")] = None,
        tune: Annotated[str, typer.Option("--tune", help="Settings --precision auto stored are also timed against the runtime's defaults, paired and interleaved: off, quick, full.")] = "quick",
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Latency (p10/p50/p90/p99) and peak memory of a model on its runner."""
        with guard():
            from ..api import bench as run_bench

            res = run_bench(model, runs=runs, warmup=warmup, threads=threads, input_shapes=input_shape, data=data,
                            place=on, tune=tune)
        if as_json:
            emit_json(res)
            return
        from ..report import human_size
        from .common import clean

        lat = res["latency_ms"]
        where = f" on {on}" if on else ""
        typer.echo(clean(f"{model}{where}: p10 {lat['p10']:.3f} ms  p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  "
                         f"p99 {lat['p99']:.3f} ms  ({lat['runs']} runs)  peak RSS {human_size(res.get('peak_rss_bytes'))}"))
        versus = res.get("stored_settings")
        if versus:
            typer.echo(clean(f"stored settings {versus['settings']}: {versus['ratio_to_defaults']:.2f}x the runtime "
                             f"defaults (A/A noise {versus['noise']:.2f}x)"))
        for w in res.get("warnings") or []:
            typer.echo(clean(f"warning: {w}"), err=True)
