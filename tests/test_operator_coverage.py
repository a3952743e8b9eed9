"""Operator coverage (docs/gen/operator_coverage.py): the classifier on crafted node tests, and a fixed
sample of the real ONNX node tests through every ready target (marked ``corpus``).

The sample is deterministic: for the onnxruntime and openvino targets, the first test (by name) of every
operator (about 200 tests, every op type once); for tflite, that of every 5th operator (about 40). Each sample
must have no silent wrong answer and no crash, and at least ``FLOOR`` of its tests passed (the counts
measured when the sample was chosen, with a small margin for toolchain updates).
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def _harness():
    name = "edgeconv_operator_coverage"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "gen" / "operator_coverage.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


cov = _harness()


# -- the classifier, on node tests made here ---------------------------------------------------
def _node_test(folder: Path, nodes, inputs, outputs, feeds, expected, inits=(), opsets=None) -> Path:
    graph = helper.make_graph(nodes, folder.name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()])
    model.ir_version = 8
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    for kind, arrays in (("input", feeds), ("output", expected)):
        for i, a in enumerate(arrays):
            (data / f"{kind}_{i}.pb").write_bytes(numpy_helper.from_array(a).SerializeToString())
    return folder


def _abs_test(folder: Path, expected_offset: float = 0.0) -> Path:
    x = np.array([[-1.5, 2.0, -3.0]], np.float32)
    return _node_test(folder, [helper.make_node("Abs", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [x], [np.abs(x) + expected_offset])


def test_a_right_answer_passes(tmp_path):
    rec = cov.run_test(_abs_test(tmp_path / "test_abs_ok"), "onnxruntime")
    assert (rec["status"], rec["raw"], rec["op"]) == ("passed", "passed", "Abs")


def test_success_with_a_wrong_answer_is_a_silent_wrong_answer(tmp_path):
    """The expected output is off by 0.5: edgeconv's verification (artifact vs source) cannot see it,
    the comparison with the test's expected outputs must."""
    rec = cov.run_test(_abs_test(tmp_path / "test_abs_wrong", 0.5), "onnxruntime")
    assert rec["status"] == "silent" and rec["detail"].startswith("output 0: max abs error 0.5")
    assert rec["raw"] == "wrong"


def test_an_unknown_operator_is_refused_by_name(tmp_path):
    x = np.ones((2,), np.float32)
    folder = _node_test(tmp_path / "test_fancy", [helper.make_node("Fancy", ["x"], ["y"], domain="com.example")],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [x], [x],
                        opsets={"": 17, "com.example": 1})
    rec = cov.run_test(folder, "onnxruntime")
    assert rec["status"] == "refused" and rec["ops"] == ["Fancy"] and rec["op"] == "com.example::Fancy"
    assert rec["raw"] == "error"


def test_a_sequence_test_is_refused_not_a_crash(tmp_path):
    folder = tmp_path / "test_seq"
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "g", [seq],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    rec = cov.run_test(folder, "onnxruntime")
    assert rec["status"] == "refused" and "sequence, not a tensor" in rec["detail"]


def test_a_runtime_failure_is_a_clean_error_not_a_crash(tmp_path):
    x = np.zeros((3,), np.float32)
    folder = _node_test(tmp_path / "test_reshape_bad", [helper.make_node("Reshape", ["x", "shape"], ["y"])],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, None])], [x], [x.reshape(1, 3)],
                        inits=[helper.make_tensor("shape", TensorProto.INT64, [2], [2, -1])])
    rec = cov.run_test(folder, "onnxruntime")
    assert rec["status"] == "error" and rec["stage"] == "verify", rec


def test_a_hang_and_a_dead_worker_are_crashes(tmp_path, monkeypatch):
    """The worker protocol: no answer within the timeout, or the process gone, is a crash for that test,
    and the next test gets a fresh worker."""
    w = cov.Worker("onnxruntime", raw=False, timeout=0.01)
    ok = _abs_test(tmp_path / "test_abs_ok")
    try:
        w._start()
        w.done = 1  # not the first test: no extra time for imports
        rec = w.run(ok)
        assert rec["status"] == "crash" and "hang" in rec["detail"]
        assert w.proc is None
        w.timeout = 120
        assert w.run(ok)["status"] == "passed"  # restarted
        w.proc.kill()
        w.proc.wait()
        rec = w.run(ok)  # a dead worker is restarted before the test
        assert rec["status"] == "passed"
    finally:
        w.stop()


def test_a_raw_toolchain_that_kills_the_worker_is_not_an_edgeconv_crash(tmp_path):
    """LiteRT aborts the process on test_equal_uint8 in the *raw* run, after edgeconv refused the model: the
    worker leaves edgeconv's result in its side file first, and the parent keeps it (raw: error)."""
    import json as _json
    import subprocess

    fake = tmp_path / "fake_worker.py"
    fake.write_text(
        "import json, os, sys\n"
        "folder = sys.stdin.readline().strip()\n"
        "rec = {'test': os.path.basename(folder), 'target': 'tflite', 'status': 'refused', 'partial': True}\n"
        "open(os.environ['EDGECONV_COVERAGE_PARTIAL'], 'w').write(json.dumps(rec))\n"
        "os.abort()  # what LiteRT does in the raw run\n")

    class FakeWorker(cov.Worker):
        def _start(self):
            super()._start()
            self.proc.kill()
            self.proc.wait()
            self.proc = subprocess.Popen([sys.executable, str(fake)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, bufsize=1, env={"EDGECONV_COVERAGE_PARTIAL": str(self.partial_file)})
            self.done = 0

    w = FakeWorker("tflite", raw=True, timeout=60)
    test = _abs_test(tmp_path / "test_equal_uint8")
    try:
        rec = w.run(test)
    finally:
        w.stop()
    assert rec["status"] == "refused", rec
    assert rec["raw"] == "error" and "raw toolchain: the worker process died" in rec["raw_detail"]
    assert "partial" not in rec
    _json.dumps(rec)


def test_matches_follows_the_backend_rule():
    a = np.array([1.0, 2.0, np.nan], np.float32)
    assert cov.matches([a], [a.copy()]) is None  # NaN == NaN
    assert cov.matches([a + 1e-4], [a]) is None  # within rtol 1e-3 / atol 1e-4
    assert "max abs error" in cov.matches([a + 0.01], [a])
    assert "shape" in cov.matches([a[:2]], [a])
    assert "dtype" in cov.matches([a.astype(np.float64)], [a])
    assert "values differ" in cov.matches([np.array([1, 2])], [np.array([1, 3])])
    assert "outputs" in cov.matches([], [a])


def test_render_counts_and_lists_the_bad_ones():
    recs = {"onnxruntime": [
        {"test": "test_a", "op": "Abs", "status": "passed", "raw": "passed"},
        {"test": "test_b", "op": "Abs", "status": "silent", "detail": "output 0: max abs error 1", "raw": "wrong"},
        {"test": "test_c", "op": "Foo", "status": "refused", "ops": ["Foo"], "detail": "x", "raw": "passed"},
    ]}
    meta = {"date": "d", "machine": "m", "versions": {}, "n_tests": 3, "partial": None, "seconds": 60, "command": "c"}
    doc = cov.to_json(recs, meta)
    assert doc["summary"]["onnxruntime"]["passed"] == 1 and doc["summary"]["onnxruntime"]["silent"] == 1
    assert doc["summary"]["onnxruntime"]["raw_passes_edgeconv_not"] == ["test_c"]
    page = cov.render(doc)
    assert "| `test_b` | `onnxruntime` | silent |" in page
    assert "| `Abs` | 2 | 1/2 **S1** |" in page and "| `Foo` | 1 | 0/1 R1 |" in page
    assert "- **Tests:** 3;" in page
    assert "| `onnxruntime` | 3 | 1 | 1 | 0 | 0 | **1** | **0** | 2 | 1 |" in page


# -- the real node tests (corpus) ---------------------------------------------------------------
def samples() -> dict[str, list[Path]]:
    tests = cov.all_tests()
    by_op: dict[str, list[Path]] = {}
    for t in tests:
        if "_expanded" not in t.name:
            by_op.setdefault(cov.op_of(t), []).append(t)
    ops = sorted(by_op)
    wide = sorted(by_op[op][0] for op in ops)
    small = sorted(by_op[op][0] for op in ops[::5])
    return {"onnxruntime": wide, "openvino": wide, "tflite": small}


# passed tests of each sample, measured when it was chosen (2026-11-28), less a margin
FLOOR = {"onnxruntime": 155, "openvino": 124, "tflite": 12}  # measured: 164 of 196, 131 of 196, 14 of 40


@pytest.mark.corpus
def test_the_pinned_node_tests_are_what_the_page_says():
    tests = cov.all_tests()
    assert len(tests) == 1765
    assert sum("_expanded" in t.name for t in tests) == 440
    non_tensor = [t.name for t in tests if isinstance(cov.tensor_data(t), str)]
    assert len(non_tensor) == 29, non_tensor
    assert len({cov.op_of(t) for t in tests}) >= 180


@pytest.fixture(scope="module")
def sample_results():
    picked = samples()
    everything = sorted({t for ts in picked.values() for t in ts})
    results = {}
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(3) as pool:
        futures = {t: pool.submit(cov.run_target, t, picked[t], False, cov.TIMEOUT[t], False, None,
                                  2 if t == "openvino" else 1) for t in picked}
        results = {t: f.result() for t, f in futures.items()}
    assert everything
    return results


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "tflite"])
def test_sample_has_no_silent_wrong_answer_and_no_crash(sample_results, target):
    recs = sample_results[target]
    counts = Counter(r["status"] for r in recs)
    bad = [f"{r['test']}: {r['status']} {r.get('detail', '')}" for r in recs if r["status"] in ("silent", "crash")]
    assert not bad, bad
    assert counts["passed"] >= FLOOR[target], counts
    # every refusal names operators, every error its stage
    assert all(r.get("ops") for r in recs if r["status"] == "refused")
    assert all(r.get("stage") for r in recs if r["status"] == "error")
