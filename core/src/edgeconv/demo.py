"""``edgeconv demo``: the built-in digits CNN to every ready target, fp32 and int8.

The model (a small CNN trained on the scikit-learn digits data by
``scripts/train_digits.py``), its calibration split and its labelled test split ship
as package data, so the demo needs no model and no network.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from .errors import EdgeconvError

PRECISIONS = ("fp32", "int8")


def sample_files() -> dict[str, Path]:
    root = files("edgeconv") / "data"
    return {k: Path(str(root / f)) for k, f in
            (("model", "digits_cnn.onnx"), ("test", "digits_test.npz"), ("calib", "digits_calib.npz"))}


SIMULATED_SAMPLES = 60


def _first_samples(npz: Path, dest: Path, n: int) -> Path:
    import numpy as np

    with np.load(npz) as d:
        np.savez(dest, **{k: d[k][:n] for k in d.files})
    return dest


def precisions_of(target: Any) -> list[str]:
    """fp32 and int8 where the target has them; its default precision in place of a missing fp32 (an NPU that
    computes in fp16)."""
    wanted = [p if p in target.precisions else target.default_precision for p in PRECISIONS]
    return [p for p in dict.fromkeys(wanted) if p in target.precisions]


def source_for(target: Any, sample: dict[str, Path]) -> tuple[Any, dict[str, Any]]:
    """The shipped ONNX model, or for a target no route from ONNX reaches that takes PyTorch models (ExecuTorch)
    its PyTorch twin: the same trained weights in ``edgeconv.testing.refnets.digits_trained``."""
    from .errors import BadInput
    from .stages.routing import find_route

    try:
        find_route("onnx", target)
    except BadInput:
        if "torch" in target.accepts:
            import torch

            from .testing.refnets import digits_trained

            return digits_trained(), {"source_options": {"example_inputs": torch.zeros(1, 1, 8, 8)}}
    return sample["model"], {}


def _ready_cells() -> list[tuple[str, str, Any]]:
    from .plugins import registry

    return [(name, precision, target) for name, target in sorted(registry().targets.items()) if not target.missing()
            for precision in precisions_of(target)]


def check_output(output: Path | None, force: bool) -> None:
    """``demo -o DIR``: the result folders it would write must not exist yet, unless ``--force``."""
    from .errors import BadInput

    if output is None or force:
        return
    taken = [f"digits-{n}-{p}" for n, p, _t in _ready_cells() if (Path(output) / f"digits-{n}-{p}").exists()]
    if taken:
        raise BadInput(f"the demo's result folders exist ({', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}); "
                       "give --force to replace them", file=output, stage="output")


def run_demo(output: Path | None = None, runs: int = 50, status: Callable[[str], None] | None = None,
             force: bool = False) -> tuple[list[dict[str, Any]], int]:
    from .api import convert
    from .plugins import registry

    check_output(output, force)
    say = status or (lambda msg: None)
    sample = sample_files()
    reports: list[dict[str, Any]] = []
    code = 0
    with tempfile.TemporaryDirectory(prefix="edgeconv-demo-") as tmp:
        base = Path(output) if output else Path(tmp)
        for name, target in sorted(registry().targets.items()):
            if target.missing():
                continue
            data = sample["test"]
            if any(r.toolchains for r in target.requirements):
                # A target in an isolated toolchain environment runs its artifact in a simulator
                # (tpu-mlir's cmodel: about a second per sample): verify it on the first samples only.
                data = _first_samples(sample["test"], Path(tmp) / f"{name}-test.npz", SIMULATED_SAMPLES)
            source, extra = source_for(target, sample)
            for precision in precisions_of(target):
                say(f"{name} {precision}")
                try:
                    result = convert(
                        source, name, precision=precision, calibration=sample["calib"], **extra,
                        data=data, output=base / f"digits-{name}-{precision}", force=force or output is None,
                        runs=runs, memory=False, status=lambda m, n=name, p=precision: say(f"{n} {p}: {m}"),
                    )
                except EdgeconvError as exc:
                    reports.append({"target": name, "precision": precision,
                                    "verdict": {"status": "error", "reason": exc.one_line()}})
                    code = max(code, exc.exit_code)
                    continue
                reports.append(result.report)
                code = max(code, result.exit_code)
    return reports, code
