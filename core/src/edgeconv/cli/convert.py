"""``edgeconv convert``: one conversion, verified and reported."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (
    BUDGETS,
    CHECKS,
    DATA,
    REPORT,
    SOURCE,
    check_options,
    check_report_path,
    echo_err,
    guard,
    pairs,
    progress,
    source_options,
    with_options,
    write_report,
)
from .render import emit, say_prune

CONVERT = (
    # what and where
    ("to", Annotated[Optional[str], typer.Option("--to", "-t", help="Target name (see `edgeconv targets`; default: the --device's target, else onnxruntime).")], None),
    ("precision", Annotated[Optional[str], typer.Option("--precision", "-p", help="fp32, fp16, int8 (static), int8-dynamic, ... as the target allows, or auto: the fastest candidate that meets every budget.")], None),
    ("device", Annotated[Optional[str], typer.Option("--device", "-d", help="A device profile (see `edgeconv devices`): fills the target, its options, the precision and budgets you do not give.")], None),
    ("calib", Annotated[Optional[str], typer.Option("--calib", help="Calibration data for int8: .npz, .npy, image folder, or 'random' (smoke runs only).")], None),
    ("output", Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder (default: ./<model>-<target>-<precision>).")], None),
    ("force", Annotated[bool, typer.Option("--force", help="Replace an existing edgeconv output folder (or --report file).")], False),
    ("option", Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Target option KEY=VALUE (repeatable; see `edgeconv targets --options`).")], None),
    ("no_verify", Annotated[bool, typer.Option("--no-verify", help="Skip verification.")], False),
    ("no_memory", Annotated[bool, typer.Option("--no-memory", help="Skip the peak-memory measurement.")], False),
    ("via", Annotated[Optional[str], typer.Option("--via", help="Force the route through this form (e.g. onnx).")], None),
    ("skip_pass", Annotated[Optional[list[str]], typer.Option("--skip-pass", help="Do not run this pass (e.g. onnx.simplify).")], None),
    ("tune", Annotated[str, typer.Option("--tune", help="With --precision auto: how hard runtime settings are searched (off, quick, full); a setting is kept only when it beats the runtime's defaults by more than the measured noise.")], "quick"),
    ("prepare_only", Annotated[bool, typer.Option("--prepare-only", help="Targets that offer it: write what this host can make (prepared ONNX, build recipe) without the vendor toolchain.")], False),
    # images as calibration data
    ("mean", Annotated[Optional[str], typer.Option("--mean", help="Image preprocessing mean, after scaling to 0..1: 0.485,0.456,0.406")], None),
    ("std", Annotated[Optional[str], typer.Option("--std", help="Image preprocessing std: 0.229,0.224,0.225")], None),
    ("bgr", Annotated[bool, typer.Option("--bgr", help="Images in BGR channel order.")], False),
    ("layout", Annotated[Optional[str], typer.Option("--layout", help="Image layout NCHW or NHWC (default: from the model).")], None),
    # pruning (PyTorch sources)
    ("prune", Annotated[Optional[str], typer.Option("--prune", help="PyTorch sources: remove this share of every prunable layer's channels (torch-pruning, e.g. 0.3) before converting; the report's source.meta.prune compares before/after.")], None),
    ("prune_round_to", Annotated[Optional[int], typer.Option("--prune-round-to", help="With --prune: keep every pruned layer's channel count a multiple of this (e.g. 8).")], None),
)


def _preprocess(opts: dict[str, Any]):
    from ..data import Preprocess
    from ..errors import BadInput

    def floats(text: str | None, default: tuple[float, ...], what: str) -> tuple[float, ...]:
        if text is None:
            return default
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise BadInput(f"{what} {text!r} is not a comma-separated list of numbers", stage="options") from None

    return Preprocess(mean=floats(opts["mean"], (0.0,), "--mean"), std=floats(opts["std"], (1.0,), "--std"),
                      bgr=opts["bgr"], layout=opts["layout"])


def _prune_options(model: str, opts: dict[str, Any]) -> dict[str, Any]:
    """--prune edits a PyTorch module: refuse other sources before any long work."""
    from ..errors import BadInput

    if opts["prune"] is None:
        if opts["prune_round_to"] is not None:
            raise BadInput("--prune-round-to goes with --prune RATIO", stage="options")
        return {}
    if opts["prune_round_to"] is not None and opts["prune_round_to"] < 1:
        raise BadInput(f"--prune-round-to {opts['prune_round_to']} must be a positive channel multiple, e.g. 8",
                       stage="options")
    from ..request import check_ratio as parse_ratio
    from ..stages.importing import pick_importer

    if pick_importer(model, opts["source_form"]).form != "torch":
        raise BadInput("--prune needs a PyTorch source (a file.py:factory or module:factory)", file=model, stage="prune")
    return {"prune": parse_ratio(opts["prune"]), "prune_data": opts["data"], "prune_round_to": opts["prune_round_to"]}


def _device(opts: dict[str, Any], target_options: dict[str, str], limits: dict[str, Any]):
    """--device NAME: fill target, options, precision and budgets the user did not give."""
    if opts["device"] is None:
        return None
    from ..devices import get, resolve
    from ..plugins import registry

    tgt = registry().targets.get(opts["to"] or get(opts["device"]).target)
    resolved = resolve(opts["device"], target=opts["to"], precision=opts["precision"], options=target_options,
                       budgets=limits, calibration=opts["calib"],
                       target_precisions=tuple(tgt.precisions) if tgt else None,
                       target_options=tuple(o.name for o in tgt.options) if tgt else None)
    filled = ", ".join(f"{k}={v}" for k, v in resolved.from_device.items()) or "nothing (all given explicitly)"
    echo_err(f"edgeconv: device {resolved.device.name}: filled {filled}")
    for note in resolved.notes:
        echo_err(f"edgeconv: device {resolved.device.name}: {note}")
    return resolved


def request_kwargs(model: str, opts: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Every option of ``convert``, parsed once into the target and the keywords of ``edgeconv.convert``."""
    from ..report import Budgets

    target_options = pairs(opts["option"], "-O")
    limits = {k: opts[k] for k in ("max_size", "max_latency", "max_accuracy_drop")}
    resolved = _device(opts, target_options, limits)
    target, precision = opts["to"], opts["precision"]
    if resolved is not None:
        target, precision, target_options, limits = resolved.target, resolved.precision, resolved.options, resolved.budgets
    src = {**source_options(opts), **_prune_options(model, opts)}
    return target or "onnxruntime", {
        "precision": precision, "calibration": opts["calib"], "data": opts["data"], "input_shapes": opts["input_shape"],
        "output": opts["output"], "force": opts["force"], "options": target_options,
        "budgets": Budgets.parse(limits["max_size"], limits["max_latency"], limits["max_accuracy_drop"]),
        "verify": not opts["no_verify"], "memory": not opts["no_memory"], "source_form": opts["source_form"],
        "via": opts["via"], "preprocess": _preprocess(opts), "skip_passes": tuple(opts["skip_pass"] or ()),
        "source_options": src, "prepare_only": opts["prepare_only"],
        "device": resolved.report() if resolved is not None else None, **check_options(opts),
    }


def register(app: typer.Typer) -> None:
    @app.command()
    @with_options(tuple(_opt(*o) for o in CONVERT), SOURCE, DATA, CHECKS, BUDGETS, REPORT)
    def convert(model: Annotated[str, typer.Argument(help="The model: a file or folder (.onnx, .pt2, SavedModel, ...), or file.py:factory.")],
                opts: dict[str, Any]) -> None:
        """Convert MODEL for a target, verify it against the source, and report."""
        with guard():
            from ..api import run
            from ..request import ConversionRequest

            target, kwargs = request_kwargs(model, opts)
            req = ConversionRequest.build(model, target, **kwargs)
            inputs = tuple(req.inputs())
            check_report_path(opts["report_html"], opts["force"], inputs)
            if opts["tune"] != "quick" and not req.auto:
                from ..errors import BadInput

                raise BadInput("--tune goes with --precision auto (or edgeconv bench)", stage="options")
            with progress(not opts["as_json"]) as status:
                result = run(req, status=status, **({"tune": opts["tune"]} if req.auto else {}))
        say_prune(result.report)
        write_report(opts["report_html"], result.report, opts["force"], inputs)
        emit(result, opts["as_json"])


def _opt(name: str, annotation: Any, default: Any):
    from .common import Opt

    return Opt(name, annotation, default)
