"""tpu-mlir's command lines, running them in the toolchain environment, and reading their output.

The tools and the arguments edgeconv uses (tpu-mlir 1.30.2, as ``--help`` prints them in the environment):

- ``model_transform.py --model_name N --model_def M.onnx --input_shapes [[1,3,224,224],...] --mlir N.mlir``
  ``[--mean a,b,c --scale a,b,c --pixel_format rgb|bgr|gray|rgba --channel_format nchw|nhwc|none]``
  ``[--test_input in.npz --test_result N_top_outputs.npz --tolerance cos,euclid]``: ONNX -> top MLIR; with a test
  input it runs the ONNX (onnxruntime) and the top MLIR and compares them (``npz_tool.py compare``).
- ``run_calibration.py N.mlir --dataset DIR --input_num K -o N_cali_table [--cali_method ...] [--chip C]``: the
  INT8 threshold table from the calibration samples (one ``.npz`` per sample in DIR).
- ``model_deploy.py --mlir N.mlir --quantize F32|F16|BF16|INT8 --chip bm1684x|bm1688|cv186x --model N.bmodel``
  ``[--calibration_table T] [--quantize_table Q] [--asymmetric] [--test_input in.npz --test_reference top.npz``
  ``--tolerance cos,euclid --correctness cos,euclid] [--opt 1|2|3]``: lowers, compares the TPU MLIR with the top
  MLIR, generates the bmodel and compares it (run in the cmodel) with the TPU MLIR.
- ``model_runner.py --input in.npz --model N.bmodel --output out.npz``: runs a bmodel in the cmodel simulator
  (edgeconv's runner calls the same function, ``tools.model_runner.model_inference``, in a long-lived process).

tpu-mlir's own comparisons are kept, at tpu-mlir's own tolerances, and recorded (``min_similarity`` per compare);
when one fails, the step is run again without it (``compare_failed``) and the build goes on: edgeconv's fidelity
contract decides, on its own data, whether the bmodel is good. The quantize table has one ``op_name mode`` per line.
Each tool runs as ``python -I -c TOOL_MAIN tool workdir args...`` in the environment (``ToolchainEnv.run``: the core's
worker -- isolated, no shell, an explicit environment, a timeout): ``tpu_mlir.entry`` sets the tools' environment and
runs them, as the wheel's console scripts do. TOOL_MAIN sends the tool's stderr into its stdout, so that tpu-mlir's
comparison headers (stderr) and results (stdout) are read in the order they were printed. (In a tpu-mlir image set up
with ``envsetup.sh`` instead of the wheel, TOOL_MAIN starts the tool script found on that environment's PATH, an
argument list, no shell.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed

TOOL_MAIN = """\
import os, sys
tool, workdir, args = sys.argv[1], sys.argv[2], sys.argv[3:]
os.chdir(workdir)
# One stream, in the order things happen: tpu-mlir prints "[Running]: npz_tool.py compare A B" on stderr and the
# comparison's result on stdout; the worker reads the two pipes apart, so stderr joins stdout here (the tools'
# children inherit it), line-buffered.
os.dup2(1, 2)
sys.stdout.reconfigure(line_buffering=True)
sys.stderr.reconfigure(line_buffering=True)
try:
    import tpu_mlir.entry as entry
except ImportError:  # a tpu-mlir image set up with envsetup.sh instead of the wheel: the tools are on PATH
    import shutil, subprocess
    exe = shutil.which(tool + ".py") or shutil.which(tool)
    if exe is None:
        sys.exit("edgeconv: " + tool + " not found (no tpu_mlir package, nor " + tool + ".py on PATH)")
    sys.exit(subprocess.call([exe, *args]))
sys.argv = [tool + ".py", *args]
sys.exit(getattr(entry, tool)() or 0)
"""

# The tools' own Python children (tpu-mlir starts npz_tool.py etc. with a shell, not isolated) write unbuffered, so
# that their lines land between the tool's "[Running]" and "[Success]" lines (the interpreter TOOL_MAIN runs in is
# isolated, -I, and ignores this; it sets its own line buffering).
TOOL_ENV = {"PYTHONUNBUFFERED": "1"}

VERSION_MAIN = """\
import importlib.metadata as m
try:
    print(m.version("tpu_mlir"))
except m.PackageNotFoundError:
    print("unknown")
"""


def shapes_arg(shapes: list[list[int]]) -> str:
    """``--input_shapes``: ``[[1,3,224,224],[1,10]]`` (one list per input, in the model's input order)."""
    for s in shapes:
        if not all(isinstance(d, int) and d > 0 for d in s):
            raise BadInput(f"tpu-mlir needs static input shapes, got {s}", stage="export")
    return "[" + ",".join("[" + ",".join(str(d) for d in s) + "]" for s in shapes) + "]"


def channel_list(text: str, what: str) -> str:
    """``--mean`` / ``--scale``: comma-separated numbers (checked here, passed as written)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        [float(p) for p in parts]
    except ValueError:
        raise BadInput(f"-O {what}={text!r}: comma-separated numbers per channel, e.g. 0.485,0.456,0.406",
                       stage="options") from None
    return ",".join(parts)


def model_transform_args(*, name: str, onnx: str, mlir: str, shapes: list[list[int]], test_input: str | None = None,
                         test_result: str | None = None, mean: str = "", scale: str = "", pixel_format: str = "",
                         channel_format: str = "") -> list[str]:
    args = ["--model_name", name, "--model_def", onnx, "--input_shapes", shapes_arg(shapes)]
    if mean:
        args += ["--mean", channel_list(mean, "mean")]
    if scale:
        args += ["--scale", channel_list(scale, "scale")]
    if pixel_format:
        args += ["--pixel_format", pixel_format]
    if channel_format:
        args += ["--channel_format", channel_format]
    if test_input:
        args += ["--test_input", test_input, "--test_result", test_result or f"{name}_top_outputs.npz"]
    return args + ["--mlir", mlir]


def run_calibration_args(*, mlir: str, dataset: str, count: int, table: str, chip: str = "",
                         method: str = "") -> list[str]:
    args = [mlir, "--dataset", dataset, "--input_num", str(int(count))]
    if method:
        args += ["--cali_method", method]
    if chip:
        args += ["--chip", chip]
    return args + ["-o", table]


def model_deploy_args(*, mlir: str, quantize: str, chip: str, bmodel: str, calibration_table: str | None = None,
                      quantize_table: str | None = None, asymmetric: bool = False, test_input: str | None = None,
                      test_reference: str | None = None, opt: int = 0) -> list[str]:
    if quantize == "INT8" and not calibration_table:
        raise BadInput("INT8 needs a calibration table (run_calibration)", stage="export")
    args = ["--mlir", mlir, "--quantize", quantize, "--chip", chip]
    if calibration_table:
        args += ["--calibration_table", calibration_table]
    if quantize_table:
        args += ["--quantize_table", quantize_table]
    if asymmetric:
        args.append("--asymmetric")
    if test_input:
        args += ["--test_input", test_input]
        if test_reference:
            args += ["--test_reference", test_reference]
    else:
        args.append("--skip_validation")
    if opt:
        args += ["--opt", str(int(opt))]
    return args + ["--model", bmodel]


def model_runner_args(*, bmodel: str, input_npz: str, output_npz: str) -> list[str]:
    return ["--input", input_npz, "--model", bmodel, "--output", output_npz]


# -- the quantize table -------------------------------------------------------------------------------------------
_LOC = re.compile(r'loc\("([^"]+)"\)')


def mlir_op_names(mlir_text: str) -> set[str]:
    """The op names (``loc("...")``) of a top MLIR file: tpu-mlir names an op ``<first output>_<OpType>``."""
    return set(_LOC.findall(mlir_text))


def keep_float_ops(nodes: tuple[str, ...] | list[str], proto: Any, mlir_text: str,
                   warn=lambda msg: None) -> list[tuple[str, str]]:
    """ONNX node names -> ``(mlir op, node)`` to keep in F32. A node tpu-mlir fused into its consumer (a Conv into
    the Relu after it) is kept through that consumer, with a warning; an unknown node name is bad input."""
    from edgeconv.plugin import did_you_mean

    by_name = {n.name: n for n in proto.graph.node if n.name}
    consumers: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ops = mlir_op_names(mlir_text)
    out: list[tuple[str, str]] = []
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            raise BadInput(f"-O keep_float: the ONNX graph has no node {name!r}{did_you_mean(name, by_name)}",
                           stage="options")
        here, hops, found = node, 0, None
        while here.output:
            found = next((c for c in (f"{here.output[0]}_{here.op_type}", here.output[0]) if c in ops), None)
            nxt = consumers.get(here.output[0], [])
            if found or hops >= 3 or len(nxt) != 1:  # follow single-consumer chains: Conv -> BN -> Relu
                break
            here, hops = nxt[0], hops + 1
        if found is None:
            warn(f"-O keep_float: node {name} ({node.op_type}) has no op of its own after model_transform (folded "
                 "or fused away); it is not in the quantize table")
            continue
        if hops:
            warn(f"-O keep_float: tpu-mlir fused node {name} ({node.op_type}) into {found}; {found} is kept in F32")
        out.append((found, name))
    return list(dict.fromkeys(out))


def qtable_text(ops: list[tuple[str, str]], mode: str = "F32") -> str:
    """tpu-mlir's format: ``op_name mode`` per line; ``#`` lines are comments (no comment after an entry)."""
    lines = ["# quantize table written by edgeconv (-O keep_float)",
             "# ONNX node -> tpu-mlir op: " + ", ".join(f"{node} -> {op}" for op, node in ops),
             "# op_name quantize_mode"]
    lines += [f"{op} {mode}" for op, _node in ops]
    return "\n".join(lines) + "\n"


# -- reading the tools' output ------------------------------------------------------------------------------------
_COMPARE = re.compile(r"\[Running\]: npz_tool\.py compare (\S+) (\S+)")
_SIM = re.compile(r"min_similarity = \(([^)]*)\)")
_VERSION = re.compile(r"TPU-MLIR v(\d[\w.\-]*)")


def compares(text: str) -> list[dict[str, Any]]:
    """tpu-mlir's own comparisons in a tool's output: the two files and ``min_similarity`` (cosine, euclidean,
    SQNR), and whether npz_tool said PASSED at its default tolerance. tpu-mlir prints ``inf`` (identical outputs:
    SQNR) and ``nan``; JSON has no such numbers (reports and manifests stay strict JSON), so a value that is not a
    finite number is None and the line's figures are kept as printed (``printed``)."""
    import math

    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        m = _COMPARE.search(line)
        if m:
            current = {"target": Path(m.group(1)).name, "reference": Path(m.group(2)).name}
            out.append(current)
            continue
        if current is None:
            continue
        s = _SIM.search(line)
        if s:
            vals: list[float | None] = []
            for v in s.group(1).split(","):
                try:
                    vals.append(float(v))
                except ValueError:
                    vals.append(None)
            if not all(v is not None and math.isfinite(v) for v in vals):
                vals = [v if v is not None and math.isfinite(v) else None for v in vals]
                current["printed"] = " ".join(s.group(1).split())
            current.update(zip(("cosine", "euclidean", "sqnr_db"), vals, strict=False))
        elif "npz compare PASSED" in line:
            current["passed"] = True
        elif "npz compare FAILED" in line:
            current["passed"] = False
    return out


def version_in(text: str) -> str | None:
    m = _VERSION.search(text)
    return m.group(1) if m else None


def first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"(Error|error:|not supported|Unsupported|Exception|GLIBC)", ln) and not ln.startswith("File "):
            return ln[:300]
    return " | ".join(lines[-2:])[:300] or "no output"


def compare_failed(text: str) -> bool:
    """Did the step stop because tpu-mlir's own comparison failed (not because the tool broke)?"""
    return "[!Error]: npz_tool.py compare" in text or "npz compare FAILED" in text


def without_validation(tool: str, args: list[str]) -> list[str]:
    """The same step without tpu-mlir's comparison: no test input (model_deploy: --skip_validation)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--test_input", "--test_result", "--test_reference"):
            skip = True
            continue
        out.append(a)
    if tool == "model_deploy" and "--skip_validation" not in out:
        out.insert(len(out) - 2 if out[-2:-1] == ["--model"] else len(out), "--skip_validation")
    return out


def run_tool(env, tool: str, args: list[str], *, workdir: Path, log: Path, timeout: float | None,
             keep_log_at: Path | None = None, warn=lambda msg: None) -> dict[str, Any]:
    """Run one tpu-mlir tool in the toolchain environment. When only tpu-mlir's own comparison failed, it is
    recorded and the step runs again without it; any other failure is ``ToolchainFailed`` (exit 4) naming the
    tool, its first error line and the kept log."""
    res = env.run(["-c", TOOL_MAIN, tool, str(workdir), *args], cwd=workdir, timeout=timeout, log=log, env=TOOL_ENV)
    res["tool"] = tool
    res["compares"] = compares(res["output"])
    res["args"] = args
    if not res["ok"] and compare_failed(res["output"]) and without_validation(tool, args) != args:
        failed = [c for c in res["compares"] if c.get("passed") is False] or res["compares"][-1:]
        shown = ", ".join(f"{c.get('target')} vs {c.get('reference')}: cosine {c.get('cosine')}" for c in failed)
        warn(f"tpu-mlir {tool}: its own comparison failed at its tolerance ({shown or 'see the log'}); built "
             "without it -- edgeconv's verification decides")
        first = res
        args = without_validation(tool, args)
        res = env.run(["-c", TOOL_MAIN, tool, str(workdir), *args], cwd=workdir, timeout=timeout,
                      log=log.with_name(log.stem + ".retry.log"), env=TOOL_ENV)
        res.update(tool=tool, args=args, compares=first["compares"], compare_failed=True,
                   first_seconds=first["seconds"])
    if not res["ok"]:
        kept = log
        if keep_log_at is not None:
            try:
                keep_log_at.write_text(log.read_text(errors="replace"))
                kept = keep_log_at
            except OSError:
                pass
        raise ToolchainFailed(f"tpu-mlir {tool} failed (exit {res['returncode']}): {first_error(res['output'])} "
                              f"(log: {kept})", stage="export")
    return res
