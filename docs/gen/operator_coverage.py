"""Operator coverage per target, measured: every ONNX backend node test converted and run through edgeconv.

    nice -n 10 python docs/gen/operator_coverage.py                     # the full matrix (cached per test)
    python docs/gen/operator_coverage.py --targets onnxruntime --limit 50
    python docs/gen/operator_coverage.py --only 'test_resize_*' --targets openvino --no-write

writes ``docs/gen/operator-coverage.md`` and ``docs/gen/operator-coverage.json``.

The corpus is the ONNX backend node-test suite of the onnx 1.22.0 wheel (``edgeconv.testing.corpus``: pinned
by version and sha256, cached outside the repository): one small model per operator case, its inputs and its
expected outputs, ``_expanded`` variants (the op written as its ONNX function) included.

For each test and each target, edgeconv does what a user's ``edgeconv convert model.onnx --to TARGET`` does
(``edgeconv.convert``: import, route, pre-check, simplify, export, verify with the fidelity contract at fp32),
with the test's own inputs as the verification data. Then the artifact is run by the target's runner on those
inputs and compared with the test's expected outputs (rtol 1e-3, atol 1e-4, as ONNX's backend runner does).
Each result is exactly one of:

- ``passed``: edgeconv reported success and the outputs match the expected ones;
- ``refused``: the target's pre-check refused the named operators (or the test's data are sequences or
  optionals, which an IO contract of tensors cannot hold);
- ``error``: edgeconv stopped with a clean error (an ``EdgeconvError`` naming the stage and the cause);
- ``caught``: verification failed: edgeconv built the artifact and its fidelity check said it is wrong;
- ``silent``: **a silent wrong answer**: edgeconv reported success, the outputs do not match the expected ones;
- ``crash``: an uncaught exception, a hang (per-test timeout) or the death of the process.

Next to it the raw toolchain runs the same test without edgeconv (``raw``): onnxruntime's InferenceSession;
OpenVINO's ``convert_model`` + ``compile_model`` (CPU, f32); onnx2tf (inputs kept in their layout) +
``TFLiteConverter.from_keras_model`` + the LiteRT interpreter. "Raw passes, edgeconv does not" lists are the
places to look for edgeconv bugs.

Cost: each target runs in its own persistent worker process (one at a time per target, the targets in
parallel); a test that outlives ``--timeout`` or kills the worker is a crash, and the worker is restarted.
Results are cached in ``<corpus cache>/coverage/`` keyed by test, target and a key made of the edgeconv
sources (core and the target's plugin) and the toolchain versions: a rerun with nothing changed is cheap.
For the tflite target the onnx2tf worker's ``run()`` is called inside the coverage worker (already holding
TensorFlow) instead of a fresh ``python -m edgeconv_tflite.worker`` per test: the same code, without ten
seconds of TensorFlow import per test.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import platform
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT_MD = ROOT / "docs" / "gen" / "operator-coverage.md"
OUT_JSON = ROOT / "docs" / "gen" / "operator-coverage.json"
RTOL, ATOL = 1e-3, 1e-4
TARGETS = ("onnxruntime", "openvino", "tflite")
STATUSES = ("passed", "refused", "error", "caught", "silent", "crash")
TITLES = {"passed": "passed", "refused": "refused by the pre-check", "error": "failed with a clean error",
          "caught": "verification failed (caught)", "silent": "silent wrong answer", "crash": "crash"}
HARNESS = 1  # bump when the classification below changes: the cached results are then run again
# Wall-clock seconds per test before it counts as a hang: generous, the run shares a loaded machine.
TIMEOUT = {"onnxruntime": 300, "openvino": 300, "tflite": 900}
RESTART_EVERY = {"onnxruntime": 400, "openvino": 300, "tflite": 150}  # bounds a worker's memory growth
PLUGIN_SRC = {"openvino": ROOT / "plugins" / "edgeconv-openvino" / "src",
              "tflite": ROOT / "plugins" / "edgeconv-tflite" / "src"}
TOOLS = {"onnxruntime": ("onnx", "onnxruntime", "onnxslim", "numpy"),
         "openvino": ("onnx", "onnxruntime", "onnxslim", "numpy", "openvino"),
         "tflite": ("onnx", "onnxruntime", "onnxslim", "numpy", "onnx2tf", "tensorflow", "tf_keras", "ai-edge-litert")}


# -- the corpus --------------------------------------------------------------------------------
def all_tests() -> list[Path]:
    """Every node test folder of the pinned corpus, sorted by name."""
    from edgeconv.testing.corpus import node_tests

    root = node_tests()
    return sorted(p for p in root.iterdir() if (p / "model.onnx").is_file())


def select(tests: list[Path], only: list[str] | None = None, limit: int | None = None) -> list[Path]:
    if only:
        tests = [t for t in tests if any(fnmatch.fnmatch(t.name, p) or p == t.name for p in only)]
    return tests[:limit] if limit else tests


def spread(tests: list[Path]) -> list[Path]:
    """The tests in round-robin order over their operators (each operator's first test first): a run cut
    short still covers every operator."""
    by_op: dict[str, list[Path]] = {}
    for t in tests:
        by_op.setdefault(op_of(t), []).append(t)
    queues = [by_op[op] for op in sorted(by_op)]
    out: list[Path] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def op_of(folder: Path) -> str:
    """The operator a test is about: its node's op type (an ``_expanded`` test: that of its unexpanded twin)."""
    import onnx

    name = folder.name
    if "_expanded" in name:
        twin = folder.parent / name[: name.index("_expanded")]
        if (twin / "model.onnx").is_file():
            folder = twin
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                  for n in proto.graph.node if n.op_type != "Constant")
    return ops.most_common(1)[0][0] if ops else "Constant"


def tensor_data(folder: Path) -> tuple[list[str], list[Any], list[Any]] | str:
    """(input names, inputs, expected outputs) of the first data set, or why they are not plain tensors."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    ins = [vi for vi in proto.graph.input if vi.name not in inits]
    for vi in (*ins, *proto.graph.output):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"{'input' if vi in ins else 'output'} {vi.name!r} is a {kind.replace('_type', '')}, not a tensor"
    data = folder / "test_data_set_0"
    out: list[list[Any]] = [[], []]
    for k, kind in enumerate(("input", "output")):
        files = sorted(data.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        for f in files:
            t = onnx.TensorProto()
            t.ParseFromString(f.read_bytes())
            out[k].append(numpy_helper.to_array(t))
    if len(out[0]) != len(ins) or len(out[1]) != len(proto.graph.output):
        return f"the data set holds {len(out[0])} inputs / {len(out[1])} outputs for {len(ins)} / {len(proto.graph.output)}"
    return [vi.name for vi in ins], out[0], out[1]


def matches(got: list[Any], expected: list[Any]) -> str | None:
    """None when every output matches (ONNX's backend rule), else why not."""
    import numpy as np

    if len(got) != len(expected):
        return f"{len(got)} outputs, {len(expected)} expected"
    for i, (g, e) in enumerate(zip(got, expected, strict=False)):
        g, e = np.asarray(g), np.asarray(e)
        if g.dtype != e.dtype and g.dtype.kind == "u" and g.dtype.itemsize == e.dtype.itemsize and e.dtype.kind == "V":
            g = g.view(e.dtype)  # onnxruntime hands float8 back as its bytes (uint8); ml_dtypes' float8 is kind V
        if g.shape != e.shape:
            return f"output {i}: shape {list(g.shape)} != expected {list(e.shape)}"
        if g.dtype != e.dtype:
            return f"output {i}: dtype {g.dtype} != expected {e.dtype}"
        if e.dtype.kind in "fc":
            try:
                ok = np.allclose(g, e, rtol=RTOL, atol=ATOL, equal_nan=True)
            except TypeError:  # float8 / bfloat16 (ml_dtypes): compare in float32
                ok = np.allclose(g.astype(np.float32), e.astype(np.float32), rtol=RTOL, atol=ATOL, equal_nan=True)
            if not ok:
                err = np.abs(g.astype(np.float64) - e.astype(np.float64))
                return f"output {i}: max abs error {float(np.nanmax(err)) if err.size else 0:.3g}"
        elif e.dtype.kind in "OUS":
            if g.tolist() != e.tolist():
                return f"output {i}: strings differ"
        elif not np.array_equal(g, e):
            return f"output {i}: {int((g != e).sum())} of {e.size} values differ"
    return None


def _brief(text: Any, n: int = 240) -> str:
    t = " ".join(str(text).split())
    return t[:n] + ("..." if len(t) > n else "")


# -- one test through edgeconv -----------------------------------------------------------------
def through_edgeconv(folder: Path, target: str, data: tuple[list[str], list[Any], list[Any]], scratch: Path,
                     threads: int = 1) -> dict[str, Any]:
    """Convert the test's model for ``target`` with edgeconv, verify, then check the expected outputs."""
    import edgeconv
    from edgeconv.errors import EdgeconvError, UnsupportedOperators
    from edgeconv.model import IOContract
    from edgeconv.artifacts import open_artifact as load_artifact
    from edgeconv.verification import runners
    from edgeconv.verification.fidelity import adapt_inputs, adapt_outputs

    names, inputs, expected = data
    feed = {n: x[None] for n, x in zip(names, inputs, strict=False)}  # one sample: [1, *input shape]
    out = scratch / "out"
    # The outputs the artifact's runner gave during edgeconv's own verification (the runner made last;
    # its first call is the test's one sample), kept to compare with the expected ones: no second compile.
    seen: list[tuple[Any, list[Any]]] = []
    make_runner = runners.make_runner

    def capturing(model: Any, **options: Any) -> Any:
        runner = make_runner(model, **options)
        calls: list[Any] = []
        infer = runner.infer

        def recording(feed: Any, _infer: Any = infer) -> Any:
            result = _infer(feed)
            if not calls:
                calls.append(result)
            return result

        runner.infer = recording
        seen.append((runner, calls))
        return runner

    runners.make_runner = capturing
    try:
        res = edgeconv.convert(folder / "model.onnx", target, precision="fp32", data=feed, output=out, force=True,
                               runs=1, warmup=0, threads=threads, memory=False)
    except UnsupportedOperators as exc:
        ops = sorted({op for _, op in exc.nodes})
        return {"status": "refused", "ops": ops, "detail": _brief(exc.one_line())}
    except EdgeconvError as exc:
        return {"status": "error", "stage": exc.stage, "detail": _brief(exc.cause)}
    finally:
        runners.make_runner = make_runner
    rep = res.report
    verdict = rep["verdict"]
    if verdict["status"] == "not-run":
        return {"status": "error", "stage": "verify", "detail": _brief(f"not verified: {verdict['reason']}")}
    # the artifact on the test's inputs, as the user's runner sees it (IO changes undone by the contract)
    art, manifest = load_artifact(res.artifact)
    src_io = IOContract.from_dict(rep["source"]["io"])
    if len(seen) >= 2 and seen[-1][1]:
        raw = seen[-1][1][0]
    else:  # not seen (a pipeline that verifies differently): run it again
        with make_runner(art, threads=threads, **(manifest.get("runner_options") or {})) as runner:
            raw = runner.infer(adapt_inputs({n: x for n, x in zip(names, inputs, strict=False)}, src_io, art.io))
    got = adapt_outputs(raw, src_io, art.io)
    wrong = matches([got.get(t.name) for t in src_io.outputs], expected)
    if verdict["status"] == "fail":
        return {"status": "caught", "detail": _brief(verdict["reason"]), "expected_ok": wrong is None}
    if wrong is not None:
        return {"status": "silent", "detail": wrong}
    return {"status": "passed"}


# -- the raw toolchains ------------------------------------------------------------------------
def raw_onnxruntime(folder: Path, data: Any, scratch: Path) -> list[Any]:
    import onnxruntime as ort

    names, inputs, _ = data
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs, strict=False)))


def raw_openvino(folder: Path, data: Any, scratch: Path) -> list[Any]:
    import openvino as ov

    names, inputs, _ = data
    model = ov.convert_model(str(folder / "model.onnx"))
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    req = compiled.create_infer_request()
    res = req.infer({i: x for i, x in enumerate(inputs)})
    return [res[o] for o in compiled.outputs]


def raw_tflite(folder: Path, data: Any, scratch: Path) -> list[Any]:
    """onnx2tf (every input kept in its layout) -> TFLiteConverter -> LiteRT; an output onnx2tf made
    channels-last is matched to the expected one by trying the permutations (as a user would)."""
    import itertools
    import shutil

    import numpy as np
    import onnx2tf
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    names, inputs, expected = data
    # onnx2tf rewrites its input file (it names the nodes, sng4onnx): never hand it the corpus's own
    copy = scratch / "raw_input.onnx"
    shutil.copyfile(folder / "model.onnx", copy)
    try:
        model = onnx2tf.convert(input_onnx_file_path=str(copy), output_folder_path=str(scratch / "raw"),
                                disable_model_save=True, non_verbose=True,
                                keep_ncw_or_nchw_or_ncdhw_input_names=[n for n, x in zip(names, inputs, strict=False) if x.ndim in (3, 4, 5)]
                                or None)
    except SystemExit as exc:
        raise RuntimeError(f"onnx2tf exited ({exc.code})") from None
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    interp = Interpreter(model_content=conv.convert())
    interp.allocate_tensors()
    ins = interp.get_input_details()
    for d, x in zip(ins, inputs, strict=False):
        if tuple(d["shape"]) != x.shape:
            interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), inputs, strict=False):
        interp.set_tensor(d["index"], np.ascontiguousarray(x.astype(d["dtype"])))
    interp.invoke()
    outs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    # map outputs to the expected ones: by position when the count matches, each up to a transpose
    res = []
    for got, e in zip(outs, expected, strict=False):
        e = np.asarray(e)
        if got.shape != e.shape and got.ndim == e.ndim and got.ndim <= 5:
            for p in itertools.permutations(range(got.ndim)):
                if e.transpose(p).shape == got.shape:
                    inv = [p.index(i) for i in range(len(p))]
                    got = got.transpose(inv)
                    break
        res.append(got.astype(e.dtype) if got.dtype != e.dtype and got.dtype.kind == e.dtype.kind else got)
    return res


RAW = {"onnxruntime": raw_onnxruntime, "openvino": raw_openvino, "tflite": raw_tflite}


def run_raw(folder: Path, target: str, data: Any, scratch: Path) -> dict[str, Any]:
    try:
        got = RAW[target](folder, data, scratch)
    except Exception as exc:  # noqa: BLE001 - a raw toolchain failing is a result
        return {"raw": "error", "raw_detail": _brief(f"{type(exc).__name__}: {exc}", 160)}
    wrong = matches(got, data[2])
    return {"raw": "passed"} if wrong is None else {"raw": "wrong", "raw_detail": wrong}


RAW_ALWAYS = ("onnxruntime",)  # cheap: run on every test; openvino's and tflite's only where edgeconv did not pass


def run_test(folder: Path, target: str, raw: bool = True,
             partial: Any = None) -> dict[str, Any]:
    """One test, one target: the edgeconv result (and the raw toolchain's), in this process.

    The raw toolchain runs on every test for onnxruntime; for openvino and tflite (seconds per test) only
    where edgeconv did not pass -- the tests where "raw passes, edgeconv does not" can happen.
    ``partial(rec)`` receives edgeconv's result before the raw run starts: a raw toolchain that kills the
    process (LiteRT aborts on test_equal_uint8) must not be counted as an edgeconv crash."""
    import tempfile

    started = time.perf_counter()
    rec: dict[str, Any] = {"test": folder.name, "target": target, "op": op_of(folder)}
    data = tensor_data(folder)
    if isinstance(data, str):
        rec.update(status="refused", ops=["(non-tensor data)"],
                   detail=f"non-tensor test: {data}; an IO contract holds tensors only")
        if raw:
            rec["raw"] = "not-run"
        rec["seconds"] = round(time.perf_counter() - started, 3)
        return rec
    before = (folder / "model.onnx").stat().st_mtime_ns
    with tempfile.TemporaryDirectory(prefix="edgeconv-cov-") as tmp:
        try:
            rec.update(through_edgeconv(folder, target, data, Path(tmp)))
        except Exception as exc:  # noqa: BLE001 - anything uncaught is a crash
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "edgeconv" in f.filename), "")
            rec.update(status="crash", detail=_brief(f"{type(exc).__name__}: {exc}"), where=where)
        if raw and (target in RAW_ALWAYS or rec["status"] != "passed"):
            if partial is not None:
                partial({**rec, "partial": True, "seconds": round(time.perf_counter() - started, 3)})
            rec.update(run_raw(folder, target, data, Path(tmp)))
    if (folder / "model.onnx").stat().st_mtime_ns != before:  # the corpus must stay as fetched
        raise RuntimeError(f"{folder / 'model.onnx'} was modified while testing {target}: refetch the corpus")
    if target == "tflite":
        _tf_reset()
    rec["seconds"] = round(time.perf_counter() - started, 3)
    return rec


# -- the worker processes ----------------------------------------------------------------------
def _tf_reset() -> None:
    try:
        import tf_keras

        tf_keras.backend.clear_session()
    except Exception:  # noqa: BLE001
        pass


def _tflite_in_process() -> None:
    """Run the onnx2tf worker's ``run(job)`` in this process (TensorFlow imported once), with the error
    handling of ``export._run_worker``: a failure is a ``ToolchainFailed``."""
    from edgeconv_tflite import export, worker

    from edgeconv.errors import ToolchainFailed

    worker.block_network()

    def run_worker(job_file: Path, work: Path, timeout: int) -> dict[str, Any]:
        job = json.loads(Path(job_file).read_text())
        started = time.perf_counter()
        try:
            res = worker.run(job)
        except BaseException as exc:  # noqa: BLE001 - as the worker's main(): every failure is a result
            if isinstance(exc, KeyboardInterrupt):
                raise
            from edgeconv_tflite.convert import brief

            raise ToolchainFailed(f"onnx2tf -> TFLite failed: {export._ANSI.sub('', brief(exc))}", stage="export") from None
        res["timings"]["worker_total"] = round(time.perf_counter() - started, 3)
        return res

    export._run_worker = run_worker


def _write_partial(rec: dict[str, Any]) -> None:
    """edgeconv's part of a test's result, kept where the parent finds it if the raw run kills us."""
    side = os.environ.get("EDGECONV_COVERAGE_PARTIAL")
    if side:
        Path(side).write_text(json.dumps(rec, default=str))


def serve(target: str, raw: bool) -> None:
    """The worker's loop: a test folder per line on stdin, its result as one JSON line on stdout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)  # the toolchains print a lot, natively too
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import warnings

    warnings.simplefilter("ignore")
    if target == "tflite":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _tflite_in_process()
    for line in sys.stdin:
        folder = line.strip()
        if not folder:
            return
        rec = run_test(Path(folder), target, raw, partial=_write_partial)
        results.write(json.dumps(rec, default=str) + "\n")


class Worker:
    """A persistent process running one target's tests; restarted after a crash, a hang or N tests."""

    def __init__(self, target: str, raw: bool, timeout: float) -> None:
        self.target, self.raw, self.timeout = target, raw, timeout
        self.proc: Any = None
        self.done = 0
        self.partial_file: Path | None = None

    def _start(self) -> None:
        import subprocess

        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", self.target] + ([] if self.raw else ["--no-raw"])
        import tempfile

        fd, side = tempfile.mkstemp(prefix="edgeconv-cov-partial-", suffix=".json")
        os.close(fd)
        self.partial_file = Path(side)
        env = {**os.environ, "EDGECONV_COVERAGE_PARTIAL": side}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1, cwd=str(ROOT), env=env)
        self.done = 0

    def stop(self) -> None:
        if self.partial_file is not None:
            self.partial_file.unlink(missing_ok=True)
            self.partial_file = None
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def run(self, folder: Path) -> dict[str, Any]:
        import select

        if self.proc is None or self.proc.poll() is not None or self.done >= RESTART_EVERY.get(self.target, 300):
            self.stop()
            self._start()
        self.done += 1
        started = time.perf_counter()
        # the first test of a fresh worker also pays its imports
        limit = self.timeout + (60 if self.done == 1 else 0)
        why = None
        self.partial_file.write_text("")
        try:
            self.proc.stdin.write(f"{folder}\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], limit)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
            else:
                why = f"no result within {limit:.0f} s (hang): the worker was killed"
        except (OSError, ValueError):
            pass
        if why is None:
            try:
                code = self.proc.wait(5)
            except Exception:  # noqa: BLE001
                code = None
            why = f"the worker process died (exit code {code})"
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        try:  # edgeconv's part finished: it was the raw toolchain that died or hung
            part = json.loads(self.partial_file.read_text() or "null")
        except (OSError, ValueError):
            part = None
        if part and part.get("test") == folder.name:
            part.pop("partial", None)
            part.update(raw="error", raw_detail=f"raw toolchain: {why}")
            return part
        rec = {"test": folder.name, "target": self.target, "status": "crash", "detail": why,
               "seconds": round(time.perf_counter() - started, 3)}
        try:
            rec["op"] = op_of(folder)
        except Exception:  # noqa: BLE001
            rec["op"] = "?"
        if self.raw:
            rec["raw"] = "not-run"
        return rec


# -- the cache ---------------------------------------------------------------------------------
def _tool_versions(target: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in TOOLS[target]:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def cache_key(target: str) -> str:
    """Changes when edgeconv's code (core + the target's plugin) or a toolchain version changes."""
    h = hashlib.sha256()
    roots = [ROOT / "core" / "src" / "edgeconv"] + ([PLUGIN_SRC[target]] if target in PLUGIN_SRC else [])
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    h.update(f"harness {HARNESS}".encode())
    h.update(json.dumps(_tool_versions(target), sort_keys=True).encode())
    return h.hexdigest()[:16]


def cache_file(target: str, key: str) -> Path:
    from edgeconv.testing.corpus import cache_dir

    return cache_dir() / "coverage" / f"{target}-{key}.jsonl"


def load_cache(target: str, key: str) -> dict[str, dict[str, Any]]:
    f = cache_file(target, key)
    out = {}
    if f.is_file():
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            prev = out.get(rec["test"], {})
            if "raw" not in rec and "raw" in prev:  # a later run without raw (the corpus tests) keeps it
                rec.update({k: prev[k] for k in ("raw", "raw_detail") if k in prev})
            out[rec["test"]] = rec
    return out


# -- the run -----------------------------------------------------------------------------------
def load_older(target: str, key: str) -> dict[str, dict[str, Any]]:
    """Results cached under earlier keys (older code or toolchains), the newest file winning."""
    out: dict[str, dict[str, Any]] = {}
    current = cache_file(target, key)
    for f in sorted(current.parent.glob(f"{target}-*.jsonl"), key=lambda p: p.stat().st_mtime):
        if f != current:
            for rec in load_cache(target, f.stem.split("-", 1)[1]).values():
                out[rec["test"]] = {**rec, "stale": f.stem.split("-", 1)[1]}
    return out


def run_target(target: str, tests: list[Path], raw: bool, timeout: float, use_cache: bool,
               progress: Any = None, jobs: int = 1, stale: bool = False, run_missing: bool = True) -> list[dict[str, Any]]:
    """Every test through one target, in ``jobs`` worker processes, cached.

    ``stale``: a test with no result under the current key takes its result from an earlier key (the
    record says which) instead of running again -- to regenerate the page quickly after a change that
    is known to touch only the tests rerun with ``--only``."""
    import queue
    import threading

    key = cache_key(target)
    cached = load_cache(target, key) if use_cache else {}
    if stale and use_cache:
        older = load_older(target, key)
        for name, rec in cached.items():  # a run without raw (the corpus tests) keeps an earlier raw result
            if "raw" not in rec and "raw" in older.get(name, {}):
                rec.update({k: older[name][k] for k in ("raw", "raw_detail") if k in older[name]})
        cached = {**older, **cached}
    if not run_missing:  # the cached results only (a partial page)
        return [cached[t.name] for t in tests if t.name in cached]
    todo = [t for t in tests if t.name not in cached
            or (raw and "raw" not in cached[t.name] and (target in RAW_ALWAYS or cached[t.name]["status"] != "passed"))]
    f = cache_file(target, key)
    f.parent.mkdir(parents=True, exist_ok=True)
    pending: queue.Queue[Path] = queue.Queue()
    for folder in spread(todo):
        pending.put(folder)
    lock = threading.Lock()
    done = [0]

    def drive(sink: Any) -> None:
        worker = Worker(target, raw, timeout)
        try:
            while True:
                try:
                    folder = pending.get_nowait()
                except queue.Empty:
                    return
                rec = worker.run(folder)
                with lock:
                    cached[folder.name] = rec
                    sink.write(json.dumps(rec, default=str) + "\n")
                    sink.flush()
                    done[0] += 1
                    if progress:
                        progress(target, done[0], len(todo), rec)
        finally:
            worker.stop()

    with f.open("a") as sink:
        threads = [threading.Thread(target=drive, args=(sink,)) for _ in range(max(1, min(jobs, len(todo))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [cached[t.name] for t in tests]


def run(targets: list[str], tests: list[Path], *, raw: bool = True, timeout: float | None = None,
        use_cache: bool = True, progress: Any = None, jobs: dict[str, int] | None = None,
        stale: bool = False, run_missing: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every target in parallel (one thread driving one worker process each)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(targets) or 1) as pool:
        futures = {t: pool.submit(run_target, t, tests, raw, timeout or TIMEOUT.get(t, 120), use_cache, progress,
                                  (jobs or {}).get(t, 1), stale, run_missing)
                   for t in targets}
        return {t: f.result() for t, f in futures.items()}


# -- the page and the JSON ---------------------------------------------------------------------
def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary = {}
    for target, recs in results.items():
        counts = Counter(r["status"] for r in recs)
        raw = Counter(r.get("raw", "not-run") for r in recs)
        summary[target] = {
            "tests": len(recs),
            **{s: counts.get(s, 0) for s in STATUSES},
            "raw": {k: raw.get(k, 0) for k in ("passed", "wrong", "error", "not-run")},
            "raw_passes_edgeconv_not": sorted(r["test"] for r in recs if r.get("raw") == "passed" and r["status"] != "passed"),
        }
    return summary


def to_json(results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> dict[str, Any]:
    """Small on purpose (< 1 MB): one compact row per test, the detail only where it is not a pass."""
    rows: dict[str, dict[str, Any]] = {}
    for target, recs in results.items():
        for r in recs:
            row = rows.setdefault(r["test"], {"op": r.get("op", "?")})
            cell: dict[str, Any] = {"s": r["status"]}
            if r.get("raw"):
                cell["raw"] = r["raw"]
            if r["status"] != "passed":
                cell["why"] = _brief(r.get("detail", ""), 160)
                if r.get("ops"):
                    cell["ops"] = r["ops"]
            row[target] = cell
    return {"schema": "edgeconv.operator-coverage/1", **meta, "summary": summarize(results),
            "tests": dict(sorted(rows.items()))}


def render(doc: dict[str, Any]) -> str:
    targets = list(doc["summary"])
    s = doc["summary"]
    lines = [
        "# Operator coverage",
        "",
        "Generated by `docs/gen/operator_coverage.py`; do not edit by hand. The data behind it, one row per test:",
        "`docs/gen/operator-coverage.json`.",
        "",
        "Every ONNX backend node test (the onnx 1.22.0 wheel, pinned by sha256, `_expanded` variants included)",
        "converted at fp32 **through edgeconv** for each target — `edgeconv.convert`, the target's pre-check, its",
        "exporter and its runner, verified by the fidelity contract with the test's own inputs — and then the",
        f"artifact's outputs compared with the test's expected outputs (rtol {RTOL:g}, atol {ATOL:g}).",
        "",
        f"- **Date (UTC):** {doc['date']}",
        f"- **Machine:** {doc['machine']}",
        "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        f"- **Tests:** {doc['n_tests']}" + (f" (**partial run**: {doc['partial']})" if doc.get("partial") else "")
        + f"; this invocation took {doc['seconds'] / 60:.0f} min",
        f"- **Command:** `{doc['command']}`",
        *([f"- **Carried over:** cached results of earlier runs (the edgeconv sources have changed since) for "
           f"{', '.join(f'{t}: {n}' for t, n in doc['stale'].items() if n)} tests"] if any((doc.get("stale") or {}).values()) else []),
        "",
        "## Summary",
        "",
        "| target | tests run | " + " | ".join(TITLES[k] for k in STATUSES)
        + " | raw toolchain passes (where run) | raw passes, edgeconv not |",
        "|---|" + "--:|" * (len(STATUSES) + 3),
    ]
    for t in targets:
        c = s[t]
        lines.append(f"| `{t}` | {c['tests']} | " + " | ".join(f"**{c[k]}**" if k in ("silent", "crash") else str(c[k]) for k in STATUSES)
                     + f" | {c['raw']['passed']} | {len(c['raw_passes_edgeconv_not'])} |")
    lines += [
        "",
        "What each column means:",
        "",
        "- **passed**: edgeconv reported success and the outputs match the expected ones.",
        "- **refused by the pre-check**: the target's operator pre-check named operators it cannot take, before",
        "  any long work (the 29 tests whose data are sequences or optionals count here: an IO contract holds",
        "  tensors only).",
        "- **failed with a clean error**: edgeconv stopped with a one-line error naming the stage (for example",
        "  the toolchain's own conversion failed, or onnxruntime cannot run the source to verify against).",
        "- **verification failed (caught)**: the artifact was built and the fidelity contract said it differs from",
        "  the source.",
        "- **silent wrong answer**: edgeconv reported success but the outputs differ from the expected ones. The",
        "  fidelity contract compares the artifact with the *source run by onnxruntime*: where onnxruntime itself",
        "  computes a wrong answer, an artifact that agrees with it is wrong without anyone noticing.",
        "- **crash**: an uncaught exception, a hang past the per-test timeout, or the death of the process.",
        "- **raw toolchain**: the same test without edgeconv: onnxruntime's `InferenceSession` (on every test);",
        "  OpenVINO's `convert_model` + `compile_model` (CPU, f32) and onnx2tf + `TFLiteConverter` + the LiteRT",
        "  interpreter (seconds per test: run only where edgeconv did not pass, which is where \"raw passes,",
        "  edgeconv not\" can happen).",
        "",
    ]
    bad = [(t, name, cell) for name, row in doc["tests"].items() for t in targets
           if (cell := row.get(t)) and cell["s"] in ("silent", "crash")]
    if bad:
        lines += ["## Silent wrong answers and crashes", "", "| test | target | result | detail |", "|---|---|---|---|"]
        lines += [f"| `{name}` | `{t}` | {cell['s']} | {_md(cell.get('why', ''))} |" for t, name, cell in bad]
        lines.append("")
    lines += ["## Raw toolchain passes, edgeconv does not", "",
              "Each one is a place where edgeconv stands between a user and a working conversion.", ""]
    for t in targets:
        miss = s[t]["raw_passes_edgeconv_not"]
        lines.append(f"- `{t}` ({len(miss)}): " + (", ".join(f"`{m}`" for m in miss[:60]) + (" ..." if len(miss) > 60 else "")
                                                  if miss else "none"))
    lines += ["", "## Why tests did not pass", "", "The most frequent reasons, per target:", ""]
    for t in targets:
        why = Counter()
        for row in doc["tests"].values():
            cell = row.get(t)
            if cell and cell["s"] not in ("passed",):
                why[f"{cell['s']}: {_reason(cell)}"] += 1
        lines += [f"### `{t}`", "", "| tests | result: reason |", "|--:|---|"]
        lines += [f"| {n} | {_md(k)} |" for k, n in why.most_common(15)]
        lines.append("")
    # per operator
    per_op: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in doc["tests"].values():
        for t in targets:
            if t in row:
                per_op[row["op"]][t][row[t]["s"]] += 1
    lines += ["## Per operator", "",
              "A cell: tests passed / tests of that operator, then what happened to the others "
              "(`R` refused, `E` clean error, `V` caught by verification, `S` silent wrong answer, `C` crash).", "",
              "| operator | tests | " + " | ".join(f"`{t}`" for t in targets) + " |",
              "|---|--:|" + "|".join(":-:" for _ in targets) + "|"]
    for op in sorted(per_op, key=str.lower):
        cells = []
        n = 0
        for t in targets:
            c = per_op[op][t]
            n = max(n, sum(c.values()))
            rest = " ".join(f"{letter}{c[k]}" for k, letter in (("refused", "R"), ("error", "E"), ("caught", "V"),
                                                                ("silent", "**S"), ("crash", "**C")) if c[k])
            rest = rest.replace("**S", "**S").replace("**C", "**C")
            rest = " ".join(f"**{p[2:]}**" if p.startswith("**") else p for p in rest.split())
            total = sum(c.values())
            cells.append(f"{c['passed']}/{total}" + (f" {rest}" if rest else "") if total else "–")
        lines.append(f"| `{op}` | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _reason(cell: dict[str, Any]) -> str:
    """A reason with the test-specific parts (names, numbers) taken out, so that like counts with like."""
    import re

    if cell["s"] == "refused":
        return "pre-check refused " + ", ".join(cell.get("ops", []))
    why = cell.get("why", "")
    why = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", why)
    why = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "N", why)
    why = re.sub(r"\[[^\]]*\]", "[…]", why)
    return why[:120]


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def meta_of(targets: list[str], tests: list[Path], n_all: int, seconds: float, argv: list[str]) -> dict[str, Any]:
    versions = {"onnx (corpus)": "1.22.0"}
    for t in targets:
        versions.update(_tool_versions(t))
    from edgeconv import __version__

    versions = {"edgeconv": __version__, **versions}
    partial = None if len(tests) == n_all else f"{len(tests)} of {n_all} tests"
    return {"date": f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "versions": versions, "n_tests": len(tests), "partial": partial, "seconds": round(seconds, 1),
            "command": "python docs/gen/operator_coverage.py" + ("" if not argv else " " + " ".join(argv))}


def _rerun_some(targets: list[str], everything: list[Path], some: list[Path], args: Any, progress: Any,
                jobs: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """``--stale --only P``: run the matching tests under the current code, the rest from the cache."""
    run(targets, some, raw=not args.no_raw, timeout=args.timeout, use_cache=not args.no_cache, progress=progress,
        jobs=jobs)
    return run(targets, select(everything, None, args.limit), raw=False, timeout=args.timeout, use_cache=True,
               progress=progress, jobs=jobs, stale=True, run_missing=not args.cached_only)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1], "--no-raw" not in argv)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N tests (after --only)")
    parser.add_argument("--only", action="append", default=None, metavar="PATTERN",
                        help="only tests whose name matches this glob (repeatable), e.g. 'test_resize_*'")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per test (default: per target)")
    parser.add_argument("--jobs", default="tflite=3,openvino=2", help="worker processes per target, e.g. tflite=2,openvino=1 "
                        "(default: %(default)s; others 1)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw toolchain runs")
    parser.add_argument("--no-cache", action="store_true", help="run every test again")
    parser.add_argument("--cached-only", action="store_true",
                        help="with --stale: tests never run are left out (the page says how many ran per target)")
    parser.add_argument("--stale", action="store_true",
                        help="take results cached under earlier code for tests not run under the current code "
                        "(the page counts them); with --only, reruns just those tests")
    parser.add_argument("--no-write", action="store_true", help="print the summary only; write no page")
    parser.add_argument("--markdown", type=Path, default=OUT_MD)
    parser.add_argument("--json", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TOOLS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (known: {', '.join(TOOLS)})")
    everything = all_tests()
    tests = select(everything, args.only, args.limit)
    started = time.perf_counter()

    def progress(target: str, i: int, n: int, rec: dict[str, Any]) -> None:
        if i % 50 == 0 or i == n or rec["status"] in ("silent", "crash"):
            print(f"[{target}] {i}/{n} {time.perf_counter() - started:.0f}s {rec['test']}: {rec['status']}"
                  f"{' - ' + rec.get('detail', '') if rec['status'] in ('silent', 'crash') else ''}", file=sys.stderr,
                  flush=True)

    jobs = {k: int(v) for k, _, v in (p.partition("=") for p in args.jobs.split(",") if p)}
    results = run(targets, tests, raw=not args.no_raw, timeout=args.timeout, use_cache=not args.no_cache,
                  progress=progress, jobs=jobs, stale=args.stale,
                  run_missing=not args.cached_only) if not (args.stale and args.only) else \
        _rerun_some(targets, everything, tests, args, progress, jobs)
    if args.stale and args.only:
        tests = select(everything, None, args.limit)
    doc = to_json(results, meta_of(targets, tests, len(everything), time.perf_counter() - started, argv))
    doc["stale"] = {t: sum(1 for r in recs if r.get("stale")) for t, recs in results.items()}
    short = {t: len(recs) for t, recs in results.items() if len(recs) < len(tests)}
    if short:
        doc["partial"] = ", ".join(f"{t} ran {n} of {len(tests)}" for t, n in short.items())
    for t, c in doc["summary"].items():
        print(f"{t:12} " + "  ".join(f"{k} {c[k]}" for k in STATUSES) + f"  | raw {c['raw']}")
    if not args.no_write:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=False) + "\n")
        args.markdown.write_text(render(doc), encoding="utf-8")
        print(f"wrote {args.markdown} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
