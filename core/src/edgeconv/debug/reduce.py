"""``edgeconv debug reduce SOURCE --to TARGET``: the smallest subgraph that still fails, as ONNX (the model a vendor
bug report needs).

The graph is the ONNX model the target receives (``pipeline.prepare``: import, route, generic passes). A candidate
is a run of nodes ``[lo, hi]`` in topological order, cut out with ``onnx.utils.extract_model``: its inputs are the
tensors its nodes read from earlier nodes (constants come along), its outputs the tensors later nodes (or the
model's outputs) read. Its inputs are fed what the reference computes there on the samples (``--data``; for int8
the calibration samples too), so every candidate sees realistic values.

A candidate **fails** when

- ``--check "CMD ..."`` is given: that command exits non-zero or does not finish. It runs without a shell
  (``shlex.split``: ``;``, ``|``, ``$(...)``, ``>`` are plain arguments), through ``edgeconv.worker`` (a scratch
  working folder, the caller's environment without ``PYTHON*``/``LD_PRELOAD``, a timeout that stops its process
  group), with the candidate's absolute path in place of every ``{}`` (appended when there is none); the candidate's
  inputs (the reference's values there) are beside it as ``<candidate>.npz``. A command given by a relative path
  (``./check.sh``) is resolved against the current folder;
- else: converting it for the target (same precision and options) fails to verify (exit 1) or the toolchain fails
  on it (exit 4).

Search: the whole model must fail; then the shortest failing prefix ``[0, hi]`` (bisection on ``hi``), then the
shortest failing suffix of it ``[lo, hi]`` (bisection on ``lo``). Failing is assumed monotonic along each bisection
(a longer run containing a failing one fails): the result is checked to fail, and every trial is recorded.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, EdgeconvError, ToolchainFailed, ToolchainMissing
from ..report import dumps as strict_json

SCHEMA = "edgeconv.reduce/1"
CALIBRATION_SAMPLES = 32  # calibration samples carried to each candidate (int8)


def _quiet(msg: str) -> None:
    pass


# -- cutting ------------------------------------------------------------------------------------------------------------
def annotate(proto: Any, values: dict[str, Any]) -> Any:
    """A copy whose every traced tensor has a value_info (dtype and one sample's shape from ``values``, the samples
    stacked on the first axis): extract_model needs one for each cut tensor."""
    import numpy as np
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    known = {v.name for v in (*m.graph.input, *m.graph.output, *m.graph.value_info)}
    for name, arr in values.items():
        if name in known:
            continue
        a = np.asarray(arr)[0]  # one sample
        m.graph.value_info.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))
    return m


def cut_points(proto: Any, lo: int, hi: int) -> tuple[list[str], list[str]]:
    """Inputs and outputs of the node run ``[lo, hi]`` (graph order): what it reads from outside (not initializers
    nor constants) and what is read after it (or is a model output)."""
    nodes = list(proto.graph.node)
    inits = {i.name for i in proto.graph.initializer}
    constant = {t for n in nodes if n.op_type == "Constant" for t in n.output}
    inside = nodes[lo:hi + 1]
    made = {t for n in inside for t in n.output if t}
    inputs = list(dict.fromkeys(t for n in inside for t in n.input
                                if t and t not in made and t not in inits and t not in constant))
    later = {t for n in nodes[hi + 1:] for t in n.input} | {o.name for o in proto.graph.output}
    outputs = list(dict.fromkeys(t for n in inside for t in n.output if t and t in later))
    if not outputs:
        outputs = [t for t in inside[-1].output if t]
    return inputs, outputs


def extract(annotated_file: Path, inputs: list[str], outputs: list[str], out: Path) -> Path:
    import onnx.utils

    try:
        onnx.utils.extract_model(str(annotated_file), str(out), inputs, outputs, check_model=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValueError/KeyError for a cut it cannot make
        raise BadInput(f"cannot cut the graph at {inputs[:3]} -> {outputs[:3]}: {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:160]}", stage="debug") from None
    return out


# -- the reference's values at every tensor ------------------------------------------------------------------------------
def all_values(proto: Any, feeds: list[dict[str, Any]], threads: int | None = None) -> dict[str, Any]:
    """Every tensor of the graph (integers too) on ``feeds``, the samples stacked on a new first axis (the data
    format's ``[N, *sample shape]``: a sample keeps its own shape, whatever its rank)."""
    import numpy as np

    from ..onnx_tools import with_outputs
    from .trace import ort_session

    names = list(dict.fromkeys([i.name for i in proto.graph.input] +
                               [t for n in proto.graph.node if n.op_type != "Constant" for t in n.output if t]))
    produced = [t for t in names if t not in {i.name for i in proto.graph.input}]
    sess = ort_session(with_outputs(proto, produced), threads)
    got: dict[str, list[Any]] = {}
    for feed in feeds:
        for k, v in feed.items():
            got.setdefault(k, []).append(np.asarray(v))
        for name, value in zip(produced, sess.run(produced, feed), strict=True):
            got.setdefault(name, []).append(np.asarray(value))
    return {k: np.stack(v) for k, v in got.items() if len({a.shape for a in v}) == 1}


# -- the predicate ------------------------------------------------------------------------------------------------------
@dataclass
class Judge:
    """Decides whether one candidate fails (the module's doc), and records every trial."""

    req: Any  # the ConversionRequest of the original conversion
    check: list[str] | None
    data: dict[str, Any]
    calib: dict[str, Any] | None
    scratch: Path
    timeout: float
    say: Callable[[str], None]
    trials: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, model: Path, inputs: list[str], lo: int, hi: int) -> bool:
        import numpy as np

        data = self.scratch / f"{model.stem}.npz"
        np.savez(data, **{k: self.data[k] for k in inputs})
        record: dict[str, Any] = {"nodes": [lo, hi], "count": hi - lo + 1}
        if self.check is not None:
            failed, why = self._command(model)
        else:
            failed, why = self._convert(model, data, inputs)
        record.update(fails=failed, why=why)
        self.trials.append(record)
        self.say(f"reduce: nodes {lo}..{hi} ({hi - lo + 1}): {'fails' if failed else 'passes'} ({why})")
        return failed

    def _command(self, model: Path) -> tuple[bool, str]:
        from ..worker import describe_exit, run

        argv = candidate_argv(self.check or [], model)
        try:
            done = run(argv, timeout=self.timeout, what="--check")
        except ToolchainFailed as exc:  # it did not finish: a hang is a failure too
            return True, exc.cause
        return (not done.ok), f"--check: {describe_exit(done.returncode)}" + (
            f" ({done.tail()})" if done.output.strip() else "")

    def _convert(self, model: Path, data: Path, inputs: list[str]) -> tuple[bool, str]:
        import numpy as np

        from .. import pipeline

        calib = None
        if self.calib is not None:
            calib = self.scratch / f"{model.stem}-calib.npz"
            np.savez(calib, **{k: self.calib[k] for k in inputs})
        out = self.scratch / f"{model.stem}-out"
        req = self.req.replace(source=str(model), data=str(data), calibration=str(calib) if calib else None,
                               output=out, force=True, verify=True, runs=1, warmup=0, memory=False,
                               input_shapes={}, keep_float=())
        try:
            res = pipeline.run(req)
        except ToolchainMissing:
            raise
        except ToolchainFailed as exc:  # the toolchain breaks on it: the bug a vendor report is about
            return True, f"the conversion failed: {exc.one_line()[:160]}"
        except EdgeconvError as exc:
            return False, f"not a valid candidate: {exc.one_line()[:160]}"
        verdict = res.report["verdict"]
        return res.exit_code == 1, str(verdict.get("reason") or verdict.get("status"))[:200]


def parse_check(check: str | None) -> list[str] | None:
    """``--check "CMD ..."`` as an argument list (``shlex.split``: never a shell); a command given by a relative
    path (``./check.sh``) resolved against the current folder, since the command runs in a scratch folder."""
    if check is None:
        return None
    try:
        argv = shlex.split(check)
    except ValueError as exc:
        raise BadInput(f"--check {check!r} is not a command line ({exc})", stage="options") from None
    if not argv:
        raise BadInput("--check is empty", stage="options")
    if "/" in argv[0] and not Path(argv[0]).is_absolute():
        argv[0] = str(Path(argv[0]).absolute())
    return argv


def candidate_argv(argv: list[str], model: Path) -> list[str]:
    """The --check command for one candidate: its path in place of ``{}``, else appended."""
    if any("{}" in a for a in argv):
        return [a.replace("{}", str(model)) for a in argv]
    return [*argv, str(model)]


# -- the search ---------------------------------------------------------------------------------------------------------
def search(n: int, fails: Callable[[int, int], bool]) -> tuple[int, int] | None:
    """The run ``[lo, hi]`` of the module's doc: shortest failing prefix, then its shortest failing suffix; None
    when the whole model does not fail."""
    if not fails(0, n - 1):
        return None
    lo, hi = 0, n - 1  # fails(0, hi) holds
    a = -1  # fails(0, a) is known not to hold (or a < 0)
    while hi - a > 1:
        mid = (a + hi) // 2
        if fails(0, mid):
            hi = mid
        else:
            a = mid
    b = hi + 1  # fails(b, hi) is known not to hold (an empty run)
    while b - lo > 1:
        mid = (lo + b) // 2
        if fails(mid, hi):
            lo = mid
        else:
            b = mid
    return lo, hi


def reduce(source: Any, target: str, *, precision: str | None = None, options: dict[str, Any] | None = None,
           calibration: Any = None, data: Any = None, input_shapes: Any = None,
           source_options: dict[str, Any] | None = None, thresholds: dict[str, float] | None = None,
           check: str | None = None, output: str | Path | None = None, force: bool = False, samples: int = 4,
           seed: int = 0, timeout: float = 600, threads: int | None = None,
           status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Bisect the model the target receives to the smallest node run that still fails (the module's doc); write it
    as ONNX with its inputs (``.npz``) beside it. Returns a document of schema ``edgeconv.reduce/1``."""
    from ..plugins import registry
    from ..request import ConversionRequest, check_int
    from .layers import feeds_for, prepare_reference

    say = status or _quiet
    samples = check_int("--samples", samples, 1, 1024)
    argv = parse_check(check)
    req = ConversionRequest.build(source, target, precision=precision, options=dict(options or {}),
                                  calibration=calibration, data=data, input_shapes=input_shapes,
                                  source_options=dict(source_options or {}), thresholds=dict(thresholds or {}),
                                  verify=False, seed=seed, threads=threads)
    out = _output_path(output, source, target, req.inputs(), force)
    prepared = prepare_reference(req, say)
    proto, io = prepared.model.obj, prepared.model.io
    warnings: list[str] = []
    values = all_values(proto, feeds_for(io, data, samples, seed, warnings), threads)
    calib = None
    if argv is None and req.calibration is not None:
        feeds = [f for f, _ in prepared.job.calibration().feeds(io, limit=CALIBRATION_SAMPLES)]
        calib = all_values(proto, feeds, threads)
    n = len(proto.graph.node)
    with tempfile.TemporaryDirectory(prefix="edgeconv-reduce-") as tmp:
        scratch = Path(tmp)
        annotated = scratch / "annotated.onnx"
        annotated.write_bytes(annotate(proto, values).SerializeToString())
        judge = Judge(req, argv, values, calib, scratch, timeout, say)
        seen: dict[tuple[int, int], bool] = {}

        def fails(lo: int, hi: int) -> bool:
            if (lo, hi) not in seen:
                inputs, outputs = cut_points(proto, lo, hi)
                if not inputs or any(t not in values for t in inputs):  # nothing to feed it, or no fixed shape
                    seen[(lo, hi)] = False
                else:
                    model = extract(annotated, inputs, outputs, scratch / f"c{len(seen):03d}.onnx")
                    seen[(lo, hi)] = judge(model, inputs, lo, hi)
            return seen[(lo, hi)]

        say(f"reduce: {n} nodes; checking the whole model first")
        found = search(n, fails)
        doc: dict[str, Any] = {"schema": SCHEMA, "source": str(source), "target": target,
                               "precision": req.precision or registry().target(target).default_precision,
                               "check": argv, "fails": found is not None, "trials": judge.trials,
                               "warnings": warnings}
        if found is None:  # nothing to reduce, nothing written
            return {**doc, "nodes": {"total": n, "kept": None}, "model": None, "data": None}
        lo, hi = found
        inputs, outputs = cut_points(proto, lo, hi)
        written = _write(extract(annotated, inputs, outputs, scratch / "reduced.onnx"), out, values, inputs)
    nodes = proto.graph.node
    return {**doc, "nodes": {"total": n, "kept": hi - lo + 1, "range": [lo, hi],
                             "names": [nodes[i].name or nodes[i].op_type for i in range(lo, hi + 1)][:200]},
            "inputs": inputs, "outputs": outputs, "model": str(written[0]), "data": str(written[1])}


def _output_path(output: str | Path | None, source: Any, target: str, inputs: list[Path], force: bool) -> Path:
    from ..request import stem

    out = Path(output) if output is not None else Path.cwd() / f"{stem(source)}-{target}-reduced.onnx"
    out = out.absolute()
    if out.suffix != ".onnx":
        raise BadInput("the reduced model is written as ONNX: give -o a path ending in .onnx", file=out,
                       stage="options")
    for f in (out, out.with_suffix(".npz")):
        if any(f.resolve() == p.resolve() for p in inputs):
            raise BadInput("would overwrite an input; choose another -o", file=f, stage="output")
        if f.is_dir() or (f.exists() and not force):
            raise BadInput("exists; give --force to replace it", file=f, stage="output")
    return out


def _write(model: Path, out: Path, values: dict[str, Any], inputs: list[str]) -> tuple[Path, Path]:
    """The reduced model and its inputs (the reference's values there), each renamed into place."""
    import os
    import shutil

    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    data = out.with_suffix(".npz")
    staged = data.with_name(f".{data.name}.tmp.npz")
    np.savez(staged, **{k: values[k] for k in inputs})
    os.replace(staged, data)
    shutil.move(str(model), str(out))
    return out, data


def summary(doc: dict[str, Any]) -> str:
    """The reduce document in a few lines (the command's text output)."""
    n = doc["nodes"]
    if not doc.get("fails"):
        why = doc["trials"][0]["why"] if doc.get("trials") else "it converts and verifies"
        return (f"the whole model ({n['total']} nodes) does not fail for {doc['target']} at {doc['precision']} "
                f"({why}): nothing to reduce, nothing written")
    lines = [f"smallest failing subgraph: {n['kept']} of {n['total']} nodes (#{n['range'][0]}..#{n['range'][1]}), "
             f"{len(doc['trials'])} trials",
             f"  inputs:  {', '.join(doc['inputs'][:8])}",
             f"  outputs: {', '.join(doc['outputs'][:8])}",
             f"  nodes:   {', '.join(n['names'][:12])}{' ...' if len(n['names']) > 12 else ''}",
             f"  written: {doc['model']} (its inputs: {doc['data']})"]
    last = next((t for t in reversed(doc["trials"]) if t["fails"]), None)
    if last:
        lines.append(f"  why it fails: {last['why']}")
    return "\n".join(lines + [f"warning: {w}" for w in doc.get("warnings") or []])


def dumps(doc: dict[str, Any]) -> str:
    return strict_json(doc, indent=2)
