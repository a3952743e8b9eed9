"""The ``edgeconv`` command line, built in a factory after plugins have loaded.

Nothing heavy is imported here: every command imports what it needs when it runs, so
``edgeconv --help`` and ``edgeconv targets`` start as fast as Typer itself.
"""

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import __version__
from .errors import EXIT_FAILED, EXIT_TOOLCHAIN, EdgeconvError

_state = {"debug": bool(os.environ.get("EDGECONV_DEBUG")), "terminated": False}


def _err(message: str) -> None:
    typer.echo(f"edgeconv: error: {message}", err=True)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """One-line errors with the documented exit code; a traceback only with --debug."""
    try:
        yield
    except typer.Exit:
        raise
    except EdgeconvError as exc:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        _err(exc.one_line())
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted; no output was written")
        raise typer.Exit(130) from None
    except Exception as exc:
        if _state["terminated"]:  # SIGTERM landed inside a C extension (e.g. during an import)
            _err("interrupted; no output was written")
            raise typer.Exit(130) from None
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        _err(f"internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)")
        raise typer.Exit(EXIT_TOOLCHAIN) from None


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A spinner on stderr naming the running stage (none with --json or off a TTY)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda msg: None
        return
    console = _console(stderr=True)
    with console.status("starting") as status:
        yield lambda msg: status.update(f"[bold]{msg}[/]")


def _options(values: list[str] | None) -> dict[str, str]:
    from .errors import BadInput

    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"-O {item!r} is not KEY=VALUE", stage="options")
        out[key.strip()] = value.strip()
    return out


def _thresholds(values: list[str] | None) -> dict[str, float]:
    from .errors import BadInput

    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if key not in ("cosine", "sqnr_db", "top1", "max_rel_err", "int_equal") or not sep:
            raise BadInput(f"--threshold {item!r} is not cosine=X, sqnr_db=X, top1=X, max_rel_err=X or int_equal=X",
                           stage="options")
        try:
            out[key] = float(value)
        except ValueError:
            raise BadInput(f"--threshold {item!r}: {value!r} is not a number", stage="options") from None
    return out


def _preprocess(mean: str | None, std: str | None, bgr: bool, layout: str | None):
    from .data import Preprocess
    from .errors import BadInput

    def floats(text: str | None, default: tuple[float, ...], what: str) -> tuple[float, ...]:
        if text is None:
            return default
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise BadInput(f"{what} {text!r} is not a comma-separated list of numbers", stage="options") from None

    return Preprocess(mean=floats(mean, (0.0,), "--mean"), std=floats(std, (1.0,), "--std"), bgr=bgr, layout=layout)


def _source_options(weights=None, trust_pickle=False, trust_code=False, dynamic=None, exporter=None, opset=None,
                    prune=None, prune_data=None, prune_round_to=None):
    from .errors import BadInput

    if exporter not in (None, "dynamo", "torchscript"):
        raise BadInput(f"--exporter {exporter!r} must be dynamo or torchscript", stage="options")
    opts = {"weights": weights, "trust_pickle": trust_pickle, "trust_code": trust_code, "dynamic": dynamic,
            "exporter": exporter, "opset": opset}
    if prune is not None:
        from .prune import parse_ratio

        opts["prune"] = parse_ratio(prune)  # checked before any long work
        opts["prune_data"] = prune_data  # labelled --data: accuracy before/after pruning
        opts["prune_round_to"] = prune_round_to
    elif prune_round_to is not None:
        raise BadInput("--prune-round-to goes with --prune RATIO", stage="options")
    if prune_round_to is not None and prune_round_to < 1:
        raise BadInput(f"--prune-round-to {prune_round_to} must be a positive channel multiple, e.g. 8", stage="options")
    return {k: v for k, v in opts.items() if v}


def _check_prunable(model: str, source_form: str | None) -> None:
    """--prune edits a PyTorch module: refuse other sources before any long work."""
    from .errors import BadInput
    from .pipeline import pick_importer

    imp = pick_importer(model, source_form)
    if imp.form != "torch":
        raise BadInput(f"--prune needs a PyTorch source (a file.py:factory or module:factory); this one is in the {imp.form} form",
                       file=model, stage="prune")


def _device(name: str | None, to: str | None, precision: str | None, options: dict[str, str],
            budgets: dict[str, str | None], calib: str | None):
    """--device NAME: fill target, options, precision and budgets the user did not give."""
    if name is None:
        return None
    from .devices import get, resolve
    from .plugins import registry

    tgt = registry().targets.get(to or get(name).target)
    return resolve(name, target=to, precision=precision, options=options, budgets=budgets, calibration=calib,
                   target_precisions=tuple(tgt.precisions) if tgt else None,
                   target_options=tuple(o.name for o in tgt.options) if tgt else None)


def _say_device(resolved) -> None:
    if resolved is None:
        return
    filled = ", ".join(f"{k}={v}" for k, v in resolved.from_device.items()) or "nothing (all given explicitly)"
    typer.echo(f"edgeconv: device {resolved.device.name}: filled {filled}", err=True)
    for note in resolved.notes:
        typer.echo(f"edgeconv: device {resolved.device.name}: {note}", err=True)


def _say_prune(report: dict[str, Any]) -> None:
    """One line on stderr: what pruning changed (the numbers are in source.meta.prune)."""
    p = ((report.get("source") or {}).get("meta") or {}).get("prune")
    if not p:
        return
    from .report import human_size

    par, w, lat = p["parameters"], p["weights_bytes"], p["latency_ms"]
    text = (f"edgeconv: pruned {p['ratio']:.0%} of the channels: parameters {par['before']:,} -> {par['after']:,} "
            f"(-{par['reduction']:.1%}), weights {human_size(w['before'])} -> {human_size(w['after'])}, "
            f"eager latency x{lat['ratio']}")
    acc = p.get("accuracy")
    if acc:
        text += (f", accuracy {acc['before']:.2%} -> {acc['after']:.2%} ({-acc['drop_pp']:+.2f} pp on "
                 f"{acc['samples']} labelled samples)")
    text += f"; fine-tune {p['finetune']['seconds']} s" if p.get("finetune") else "; not fine-tuned"
    typer.echo(text, err=True)


def _emit(result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
    else:
        from .report import render

        render(result.report, _console())
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# Options shared by convert and verify.
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Verification data: .npz keyed by input name (+ 'labels'), .npy or an image folder. Default: generated from the IO contract.")]
ShapeOpt = Annotated[Optional[list[str]], typer.Option("--input-shape", help="Pin an input's dynamic axes: NAME:1,3,224,224 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout.")]
MaxSize = Annotated[Optional[str], typer.Option("--max-size", help="Budget: artifact size, e.g. 25MB.")]
MaxLat = Annotated[Optional[str], typer.Option("--max-latency", help="Budget: p50 latency, e.g. 100ms.")]
MaxDrop = Annotated[Optional[str], typer.Option("--max-accuracy-drop", help="Budget: accuracy drop in percentage points (top-1 disagreement without labels).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="Runtime threads for verification and latency.")]
Runs = Annotated[int, typer.Option("--runs", help="Timed inferences after warm-up.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for generated data.")]
Weights = Annotated[Optional[Path], typer.Option("--weights", help="PyTorch factory sources: a state_dict (.safetensors, or .pt/.pth read with weights_only=True).")]
TrustPickle = Annotated[bool, typer.Option("--trust-pickle", help="Allow loading a pickled PyTorch model (runs code from the file).")]
TrustCode = Annotated[bool, typer.Option("--trust-code", help="Allow Keras Lambda layers (runs code from the file).")]
Dynamic = Annotated[Optional[list[str]], typer.Option("--dynamic", help="Name a dynamic batch axis for framework sources, e.g. --dynamic batch.")]
Exporter = Annotated[Optional[str], typer.Option("--exporter", help="PyTorch -> ONNX exporter: torchscript or dynamo (default: by rule, see docs).")]
Opset = Annotated[Optional[int], typer.Option("--opset", help="ONNX opset for framework sources.")]
Thresh = Annotated[Optional[list[str]], typer.Option("--threshold", help="Override a fidelity threshold: cosine=0.99, sqnr_db=20, top1=0.9.")]
ReportOpt = Annotated[Optional[Path], typer.Option("--report", help="Also write the report as one self-contained HTML page (plots, fidelity, budgets, manifest) to this path.")]


def _check_report(path: Path | None) -> None:
    """Before any long work: the HTML report needs matplotlib (exit 3 with the hint if absent)."""
    if path is not None:
        from .html_report import require_plotting

        require_plotting()


def _write_report(path: Path | None, doc: dict[str, Any]) -> None:
    if path is None:
        return
    with guard():
        from .html_report import write_html

        out = write_html(doc, path)
    typer.echo(f"edgeconv: wrote the HTML report {out}", err=True)


def make_app() -> typer.Typer:
    """Load plugins, then build the Typer app (plugins may add commands)."""
    from .plugins import load_plugins, pm

    load_plugins()
    app = typer.Typer(
        name="edgeconv",
        help="Convert a trained model for an edge device, and prove it still computes the same answers, fits and is fast enough.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"edgeconv {__version__}")
            raise typer.Exit(0)

    @app.callback()
    def _main(
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
        version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    ) -> None:
        if debug:
            _state["debug"] = True

    @app.command()
    def convert(
        model: Annotated[str, typer.Argument(help="The model: a file or folder (.onnx, ...).")],
        to: Annotated[Optional[str], typer.Option("--to", "-t", help="Target name (see `edgeconv targets`; default: the --device's target, else onnxruntime).")] = None,
        precision: Annotated[Optional[str], typer.Option("--precision", "-p", help="fp32, fp16, int8 (static), int8-dynamic, ... as the target allows, or auto: the fastest candidate that meets every budget (default: the --device's preferred one, else the target's, fp32 for most).")] = None,
        device: Annotated[Optional[str], typer.Option("--device", "-d", help="A device profile (see `edgeconv devices`): fills the target, its options, the precision and budgets you do not give explicitly.")] = None,
        calib: Annotated[Optional[str], typer.Option("--calib", help="Calibration data for int8: .npz, .npy, image folder, or 'random' (smoke runs only).")] = None,
        data: DataOpt = None,
        input_shape: ShapeOpt = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder (default: ./<model>-<target>-<precision>).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
        option: Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Target option KEY=VALUE (repeatable; see `edgeconv targets --options`).")] = None,
        max_size: MaxSize = None,
        max_latency: MaxLat = None,
        max_accuracy_drop: MaxDrop = None,
        threshold: Thresh = None,
        no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip verification.")] = False,
        no_memory: Annotated[bool, typer.Option("--no-memory", help="Skip the peak-memory measurement.")] = False,
        threads: Threads = None,
        runs: Runs = 50,
        seed: Seed = 0,
        source_form: Annotated[Optional[str], typer.Option("--from", help="Source format when the suffix does not tell.")] = None,
        via: Annotated[Optional[str], typer.Option("--via", help="Force the route through this form (e.g. onnx).")] = None,
        skip_pass: Annotated[Optional[list[str]], typer.Option("--skip-pass", help="Do not run this pass (e.g. onnx.simplify).")] = None,
        mean: Annotated[Optional[str], typer.Option("--mean", help="Image preprocessing mean, after scaling to 0..1: 0.485,0.456,0.406")] = None,
        std: Annotated[Optional[str], typer.Option("--std", help="Image preprocessing std: 0.229,0.224,0.225")] = None,
        bgr: Annotated[bool, typer.Option("--bgr", help="Images in BGR channel order.")] = False,
        layout: Annotated[Optional[str], typer.Option("--layout", help="Image layout NCHW or NHWC (default: from the model).")] = None,
        label_output: Annotated[Optional[str], typer.Option("--label-output", help="Output holding class scores for accuracy (default: the first).")] = None,
        weights: Weights = None,
        trust_pickle: TrustPickle = False,
        trust_code: TrustCode = False,
        dynamic: Dynamic = None,
        exporter: Exporter = None,
        opset: Opset = None,
        prune: Annotated[Optional[str], typer.Option("--prune", help="PyTorch sources: remove this share of every prunable layer's channels (torch-pruning, e.g. 0.3) before converting; the report's source.meta.prune compares parameters, size, latency and (with labelled --data) accuracy before/after. Fine-tune through the Python API.")] = None,
        prune_round_to: Annotated[Optional[int], typer.Option("--prune-round-to", help="With --prune: keep every pruned layer's channel count a multiple of this (e.g. 8; runtimes are often faster on such counts, see docs/benchmarks-prune.md).")] = None,
        prepare_only: Annotated[bool, typer.Option("--prepare-only", help="Targets that offer it: write what this host can make (prepared ONNX, build recipe) without the vendor toolchain.")] = False,
        as_json: JsonOpt = False,
        report_html: ReportOpt = None,
    ) -> None:
        """Convert MODEL for a target, verify it against the source, and report."""
        with guard():
            _check_report(report_html)
            from .pipeline import convert as run_convert
            from .report import Budgets

            opts = _options(option)
            limits = {"max_size": max_size, "max_latency": max_latency, "max_accuracy_drop": max_accuracy_drop}
            src_opts = _source_options(weights, trust_pickle, trust_code, dynamic, exporter, opset, prune, data,
                                       prune_round_to)
            if prune is not None:
                _check_prunable(model, source_form)
            resolved = _device(device, to, precision, opts, limits, calib)
            if resolved is not None:
                to, precision, opts, limits = resolved.target, resolved.precision, resolved.options, resolved.budgets
            budgets = Budgets.parse(limits["max_size"], limits["max_latency"], limits["max_accuracy_drop"])
            _say_device(resolved)
            with _progress(not as_json) as status:
                result = run_convert(
                    model, to or "onnxruntime", precision=precision, calibration=calib, data=data,
                    input_shapes=input_shape, output=output, force=force, options=opts, budgets=budgets,
                    thresholds=_thresholds(threshold), verify=not no_verify, runs=runs, threads=threads,
                    seed=seed, source_form=source_form, via=via, preprocess=_preprocess(mean, std, bgr, layout),
                    skip_passes=tuple(skip_pass or ()), memory=not no_memory, label_output=label_output,
                    source_options=src_opts, prepare_only=prepare_only, status=status,
                    device=resolved.report() if resolved is not None else None,
                )
        _say_prune(result.report)
        _write_report(report_html, result.report)
        _emit(result, as_json)

    @app.command()
    def verify(
        source: Annotated[str, typer.Argument(help="The source model.")],
        artifact: Annotated[Path, typer.Argument(help="An edgeconv output folder, or a model file.")],
        data: DataOpt = None,
        input_shape: ShapeOpt = None,
        precision: Annotated[Optional[str], typer.Option("--precision", help="Thresholds of this precision (default: from the manifest).")] = None,
        max_size: MaxSize = None,
        max_latency: MaxLat = None,
        max_accuracy_drop: MaxDrop = None,
        threshold: Thresh = None,
        threads: Threads = None,
        runs: Runs = 50,
        seed: Seed = 0,
        label_output: Annotated[Optional[str], typer.Option("--label-output")] = None,
        weights: Weights = None,
        trust_pickle: TrustPickle = False,
        trust_code: TrustCode = False,
        as_json: JsonOpt = False,
        report_html: ReportOpt = None,
    ) -> None:
        """Verify an existing artifact against its source (the fidelity contract)."""
        with guard():
            _check_report(report_html)
            from .pipeline import verify as run_verify
            from .report import Budgets

            result = run_verify(
                source, artifact, data=data, precision=precision, input_shapes=input_shape,
                budgets=Budgets.parse(max_size, max_latency, max_accuracy_drop), thresholds=_thresholds(threshold),
                runs=runs, threads=threads, seed=seed, label_output=label_output,
                source_options=_source_options(weights, trust_pickle, trust_code),
            )
        _write_report(report_html, result.report)
        _emit(result, as_json)

    @app.command()
    def bench(
        model: Annotated[str, typer.Argument(help="A model file or an edgeconv output folder.")],
        runs: Runs = 100,
        threads: Threads = None,
        input_shape: ShapeOpt = None,
        data: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Latency (p10/p50/p90/p99) and peak memory of a model on its runner."""
        with guard():
            from .pipeline import bench as run_bench

            res = run_bench(model, runs=runs, threads=threads, input_shapes=input_shape, data=data)
        if as_json:
            typer.echo(json.dumps(res, indent=2, default=str))
            return
        from .report import human_size

        lat = res["latency_ms"]
        typer.echo(
            f"{model}: p10 {lat['p10']:.3f} ms  p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  "
            f"p99 {lat['p99']:.3f} ms  ({lat['runs']} runs)  peak RSS {human_size(res.get('peak_rss_bytes'))}"
        )

    @app.command()
    def inspect(
        model: Annotated[str, typer.Argument(help="The model.")],
        input_shape: ShapeOpt = None,
        source_form: Annotated[Optional[str], typer.Option("--from")] = None,
        weights: Weights = None,
        trust_pickle: TrustPickle = False,
        trust_code: TrustCode = False,
        dynamic: Dynamic = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a model's IO contract, operator histogram and which targets support its ops."""
        with guard():
            from .inspect import inspect_model

            info = inspect_model(model, input_shapes=input_shape, source_form=source_form,
                                 options=_source_options(weights, trust_pickle, trust_code, dynamic))
        if as_json:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        _render_inspect(info)

    @app.command()
    def targets(
        options: Annotated[bool, typer.Option("--options", help="List each target's options.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """List targets: ready, missing (with the install hint) or broken."""
        from .plugins import plugins, registry

        reg = registry()
        rows = []
        for name, t in sorted(reg.targets.items()):
            miss = t.missing()
            rows.append({
                "name": name, "title": t.title, "status": "missing" if miss else "ready",
                "hint": miss[0].hint if miss else None, "provider": t.dist, "precisions": list(t.precisions),
                "accepts": list(t.accepts), "suffix": t.suffix,
                "options": [{"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help} for o in t.options],
            })
        from .records import KNOWN_TARGETS

        for name, (dist, title, hint) in sorted(KNOWN_TARGETS.items()):
            if name not in reg.targets and name not in reg.conflicts:
                rows.append({"name": name, "title": title, "status": "missing", "hint": hint,
                             "provider": f"{dist} (not installed)"})
        for name, who in sorted(reg.conflicts.items()):
            rows.append({"name": name, "status": "conflict", "hint": f"registered by {' and '.join(who)}", "provider": ", ".join(who)})
        for p in plugins():
            if p.broken:
                rows.append({"name": p.name, "status": "broken", "hint": f"{p.stage}: {p.error}", "provider": f"{p.dist} {p.version}"})
        if as_json:
            typer.echo(json.dumps({"schema": "edgeconv.targets/1", "targets": rows}, indent=2, default=str))
            return
        # A plain table: rich costs ~100 ms to import, and this command must start fast.
        colour = {"ready": "green", "missing": "yellow", "broken": "red", "conflict": "red"}
        header = ("target", "status", "precisions", "accepts", "provider", "note")
        table = [header] + [
            (r["name"], r["status"], ",".join(r.get("precisions") or []), ",".join(r.get("accepts") or []),
             r.get("provider") or "", r.get("hint") or r.get("title") or "")
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        for n, row in enumerate(table):
            cells = [cell.ljust(w) for cell, w in zip(row, widths)]
            if n:
                cells[1] = typer.style(cells[1], fg=colour[row[1]])
            typer.echo("  ".join([*cells, row[-1]]).rstrip())
        if options:
            for r in rows:
                for o in r.get("options") or []:
                    typer.echo(f"  {r['name']}: -O {o['name']}=<{o['type']}> (default {o['default']!r}) {o['help']}")

    @app.command()
    def devices(
        name: Annotated[Optional[str], typer.Argument(help="A device: show its profile and the source of every fact.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List device profiles (`--device NAME` on convert), or show one with its sources."""
        with guard():
            from .devices import SCHEMA, catalogue, get
            from .plugins import registry

            reg = registry()

            def status(target: str) -> str:
                t = reg.targets.get(target)
                return "ready" if t is not None and not t.missing() else "missing"

            if name is not None:
                dev = get(name)
                if as_json:
                    typer.echo(json.dumps({"schema": SCHEMA, "device": {**dev.to_dict(), "target_status": status(dev.target)}},
                                          indent=2))
                    return
                _render_device(dev, status(dev.target))
                return
            devs = list(catalogue().values())
        if as_json:
            typer.echo(json.dumps({"schema": SCHEMA, "devices": [{**d.to_dict(), "target_status": status(d.target)}
                                                                 for d in devs]}, indent=2))
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="device profiles (edgeconv devices NAME: details and sources)", title_justify="left")
        for col in ("device", "target", "precisions"):
            table.add_column(col, no_wrap=True)
        table.add_column("options", overflow="fold")
        table.add_column("memory", overflow="fold", ratio=1)
        for d in devs:
            colour = "green" if status(d.target) == "ready" else "yellow"
            table.add_row(d.name, f"[{colour}]{escape(d.target)}[/]", ",".join(d.precisions),
                          escape(" ".join(f"{k}={v}" for k, v in d.options.items())), escape(d.fact("memory") or "unknown"))
        _console().print(table)

    @app.command()
    def plugins(
        all_: Annotated[bool, typer.Option("--all", help="Include built-in plugins.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """List installed plugins, their versions and hooks, and broken ones with the error."""
        from .plugins import plugins as list_plugins

        items = [p for p in list_plugins() if all_ or not p.builtin]
        data = [{"name": p.name, "distribution": p.dist, "version": p.version, "module": p.module,
                 "builtin": p.builtin, "hooks": p.hooks, "broken": p.broken, "error": p.error, "stage": p.stage}
                for p in items]
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        if not data:
            typer.echo("no plugins installed (built-ins: edgeconv plugins --all)")
        for p in data:
            state = f"BROKEN at {p['stage']}: {p['error']}" if p["broken"] else ", ".join(p["hooks"])
            typer.echo(f"{p['name']}  {p['distribution']} {p['version']}  {state}")

    @app.command()
    def doctor(as_json: JsonOpt = False) -> None:
        """Check the environment deeply: every target's toolchain, versions, CPU features."""
        from rich.markup import escape

        from .doctor import run_doctor

        info = run_doctor()
        if as_json:
            typer.echo(json.dumps(info, indent=2, default=str))
            return
        console = _console()
        for k, v in info["host"].items():
            console.print(f"{k}: {v}")
        for name, t in info["targets"].items():
            colour = {"ready": "green", "missing": "yellow"}.get(t["status"], "red")
            console.print(f"[bold]{name}[/] [{colour}]{t['status']}[/] {escape(t.get('hint') or t.get('error') or '')}")
            if t.get("details"):
                console.print("  " + escape(json.dumps(t["details"], default=str)))
        for p in info["broken_plugins"]:
            console.print(f"[red]broken plugin[/] {p}")

    @app.command()
    def demo(
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the artifacts (default: a temporary folder).")] = None,
        as_json: JsonOpt = False,
        runs: Runs = 50,
        report_html: ReportOpt = None,
    ) -> None:
        """Convert the built-in digits CNN to every ready target at fp32 and int8, verified on real labels."""
        import tempfile

        from .report import DEMO_SCHEMA

        with guard():
            _check_report(report_html)
            from .demo import run_demo

            # The HTML page shows each artifact's manifest: keep a temporary output until it is written.
            with tempfile.TemporaryDirectory(prefix="edgeconv-demo-") as tmp:
                with _progress(not as_json) as status:
                    reports, code = run_demo(output=output or (Path(tmp) if report_html else None), runs=runs,
                                             status=status)
                _write_report(report_html, {"schema": DEMO_SCHEMA, "results": reports})
        if as_json:
            typer.echo(json.dumps({"schema": DEMO_SCHEMA, "results": reports}, indent=2, default=str))
        else:
            from .report import render_demo

            render_demo(reports, _console())
        if code:
            raise typer.Exit(code)

    @app.command("report")
    def report_cmd(
        run: Annotated[str, typer.Argument(help="A report: report.json, the output of --json or of `edgeconv demo --json`, an output folder holding report.json, or - for standard input.")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (default: RUN with the suffix .html; required when RUN is -).")] = None,
    ) -> None:
        """Render a JSON report as one self-contained HTML page: verdict, budgets, route, fidelity, plots, manifest."""
        with guard():
            from .errors import BadInput
            from .html_report import load_document, require_plotting, write_html

            require_plotting()
            if output is None:
                if run == "-":
                    raise BadInput("reading standard input: give the HTML file with -o PATH", stage="report")
                src = Path(run)
                output = src / "report.html" if src.is_dir() else src.with_suffix(".html")
            out = write_html(load_document(run), output)
        typer.echo(str(out))

    pm.hook.register_commands(app=app)
    return app


def _render_device(dev: Any, target_status: str) -> None:
    from rich.markup import escape

    console = _console()
    console.print(f"[bold]{escape(dev.name)}[/]: {escape(dev.title)} ({escape(dev.vendor)})")
    also = f" (also: {', '.join(dev.also)})" if dev.also else ""
    console.print(f"target: {escape(dev.target)} [{'green' if target_status == 'ready' else 'yellow'}]{target_status}[/]{escape(also)}")
    console.print(f"precisions (preferred first): {', '.join(dev.precisions)}")
    console.print("options: " + escape(" ".join(f"-O {k}={v}" for k, v in dev.options.items()) or "none"))
    console.print("budgets: " + escape(", ".join(f"{k}={v}" for k, v in dev.budgets.items()) or "none")
                  + f" ({escape(dev.budgets_reason)})")
    if dev.note:
        console.print(f"note: {escape(dev.note)}")
    console.print("[bold]facts[/] (each with its source; URLs unbroken to copy):")
    for key, f in dev.facts.items():
        console.print(f"  [bold]{escape(key)}[/]: {escape(str(f.get('value', '')))}")
        console.print(f"    source ({escape(f.get('kind', ''))}): {escape(f.get('source', ''))}", soft_wrap=True)
    for key in dev.unknown:
        console.print(f"  [bold]{escape(key)}[/]: unknown (searched, no source found)")


def _render_inspect(info: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .model import format_shape

    console = _console()
    console.print(f"[bold]{escape(info['source'])}[/] ({info['form']})  {escape(json.dumps(info.get('meta', {}), default=str))}")
    t = Table(title="IO contract", title_justify="left")
    for col in ("", "name", "shape", "dtype", "layout"):
        t.add_column(col)
    for role in ("inputs", "outputs"):
        for spec in info["io"][role]:
            t.add_row(role[:-1], escape(spec["name"]), escape(format_shape(tuple(spec["shape"]))), spec["dtype"],
                      spec.get("layout") or "")
    console.print(t)
    if info.get("ops"):
        console.print("ops: " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()))
        console.print(f"parameters: {info.get('parameters', 0):,}")
    for name, s in info["targets"].items():
        extra = ", ".join(f"{u['node']} ({u['op_type']})" for u in s.get("unsupported", [])[:8])
        console.print(f"target {name}: {s['status']} {extra or s.get('reason') or s.get('hint') or ''}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``edgeconv`` script."""

    def _term(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary output is removed
        _state["terminated"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if "--debug" in (argv if argv is not None else sys.argv[1:]):
        _state["debug"] = True
    try:
        app = make_app()
    except Exception as exc:  # never a traceback for a broken environment
        _err(f"could not start: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_TOOLCHAIN)
    try:
        app(args=argv, prog_name="edgeconv")
    except KeyboardInterrupt:
        _err("interrupted; no output was written")
        sys.exit(130)


__all__ = ["EXIT_FAILED", "main", "make_app"]
