"""``edgeconv demo`` and ``edgeconv report``: the built-in sample to every ready target; a JSON report as a page."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_report_path, console, emit_json, guard, progress, write_report
from .render import render_demo


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the artifacts (default: a temporary folder).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace existing demo result folders in --output (and an existing --report file).")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document on stdout.")] = False,
        runs: Annotated[int, typer.Option("--runs", help="Timed inferences after warm-up.")] = 50,
        report_html: Annotated[Optional[Path], typer.Option("--report", help="Also write one self-contained HTML page to this path.")] = None,
    ) -> None:
        """Convert the built-in digits CNN to every ready target at fp32 and int8, verified on real labels."""
        import tempfile

        from ..report import DEMO_SCHEMA

        with guard():
            check_report_path(report_html, force)
            from ..demo import check_output, run_demo

            check_output(output, force)
            # The HTML page shows each artifact's manifest: keep a temporary output until it is written.
            with tempfile.TemporaryDirectory(prefix="edgeconv-demo-") as tmp:
                with progress(not as_json) as status:
                    reports, code = run_demo(output=output or (Path(tmp) if report_html else None), runs=runs,
                                             status=status, force=force)
                write_report(report_html, {"schema": DEMO_SCHEMA, "results": reports}, force)
        if as_json:
            emit_json({"schema": DEMO_SCHEMA, "results": reports})
        else:
            render_demo(reports, console())
        if code:
            raise typer.Exit(code)

    @app.command("report")
    def report_cmd(
        run: Annotated[str, typer.Argument(help="A report: report.json, the output of --json or of `edgeconv demo --json`, an output folder holding report.json, or - for standard input.")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (default: RUN with the suffix .html; required when RUN is -).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace an existing HTML file.")] = False,
    ) -> None:
        """Render a JSON report as one self-contained HTML page: verdict, budgets, route, fidelity, plots, manifest."""
        with guard():
            from ..errors import BadInput
            from ..html_report import load_document, require_plotting, write_html

            require_plotting()
            src = None if run == "-" else Path(run)
            if output is None:
                if src is None:
                    raise BadInput("reading standard input: give the HTML file with -o PATH", stage="report")
                output = src / "report.html" if src.is_dir() else src.with_suffix(".html")
            if src is not None and src.is_dir() and (src / "manifest.json").is_file():
                from ..manifest import read

                read(src / "manifest.json")  # the artifact's files still have the sha256 the manifest recorded
            report_file = (src / "report.json" if src.is_dir() else src) if src is not None else None
            out = write_html(load_document(run), output, force=force,
                             inputs=(report_file,) if report_file is not None else ())
        typer.echo(str(out))
