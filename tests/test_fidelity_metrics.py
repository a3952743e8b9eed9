"""The metric table (one row per metric drives the comparison, --threshold and the reports), the per-slice
comparison, and class labels (issue 17 sections 1 and 4)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import BadInput
from edgeconv.plugins import registry
from edgeconv.records import Metric
from edgeconv.verification import metrics as M
from edgeconv.verification.metrics import compare, thresholds_for


def yolo_like(samples: int = 8, anchors: int = 400, seed: int = 0) -> np.ndarray:
    """[S, 4+3, N]: boxes in pixels 0..320, then class scores 0..1 (mostly near 0, a few near 1)."""
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 320, (samples, 4, anchors))
    scores = rng.beta(0.3, 3.0, (samples, 3, anchors))
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def int8_per_tensor(x: np.ndarray) -> np.ndarray:
    """What one INT8 scale for the whole tensor does (the scale static INT8 gives a Concat's output)."""
    scale = float(np.abs(x).max()) / 127
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(x.dtype)


def int8_per_slice(x: np.ndarray, axis: int = 1) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    scale = np.abs(x).max(axis=tuple(i for i in range(x.ndim) if i != axis)).reshape(shape) / 127
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(x.dtype)


def test_a_mixed_range_output_destroyed_by_one_scale_fails_per_slice_though_whole_cosine_is_high():
    ref = yolo_like()
    out = int8_per_tensor(ref)
    res = compare("output0", ref, out, thresholds_for("int8"))
    # what let it through before: the whole tensor looks excellent
    assert res["cosine"] > 0.999 and res["sqnr_db"] > 27
    assert not res["pass"]
    sl = res["slices"]
    assert sl["axis"] == 1 and sl["count"] == 7 and not sl["pass"]
    assert sl["worst"]["index"] in (4, 5, 6)  # a score slice, never a box slice
    assert sl["failing"]["range_err"] == 3  # all three score slices, no box slice
    assert sl["worst_by"]["range_err"]["value"] > 0.5
    assert any(f.startswith(f"slice {sl['worst_by']['range_err']['index']} of 7 along axis 1") for f in res["failures"])
    # the same values quantized per slice (boxes and scores apart) pass
    good = compare("output0", ref, int8_per_slice(ref), thresholds_for("int8"))
    assert good["pass"], good["failures"]
    assert good["slices"]["worst_by"]["range_err"]["value"] < 0.05


def test_v5_layout_is_sliced_on_its_last_axis_and_a_declared_axis_wins():
    ref = yolo_like().transpose(0, 2, 1).copy()  # [S, N, 4+C]
    res = compare("y", ref, int8_per_tensor(ref), thresholds_for("int8"))
    assert res["slices"]["axis"] == 2 and not res["pass"]
    # declared: per sample instead (axis 0): every sample mixes both ranges, so each passes alone
    declared = compare("y", ref, int8_per_tensor(ref), thresholds_for("int8"), axis=0)
    assert declared["slices"]["axis"] == 0 and declared["slices"]["count"] == 8
    # a declared axis on a 2-D output slices it (columns over samples); undeclared, 2-D outputs are not sliced
    two = np.random.default_rng(1).standard_normal((16, 10)).astype(np.float32)
    assert "slices" not in compare("l", two, two, thresholds_for("int8"))
    assert compare("l", two, two, thresholds_for("int8"), axis=1)["slices"]["count"] == 10
    with pytest.raises(BadInput, match="slice axis 3 is out of range"):
        compare("l", two, two, thresholds_for("int8"), axis=3)


def test_flat_slices_are_not_judged_alone():
    """A class never scored (all ~1e-4) quantized to 0 is not a wrong answer: too flat to judge alone; the whole
    output covers it."""
    ref = yolo_like()
    ref[:, 6, :] = 1e-6
    out = int8_per_slice(ref)
    out[:, 6, :] = 0.0
    res = compare("output0", ref, out, thresholds_for("int8"))
    assert res["pass"], res["failures"]
    assert res["slices"]["flat"] == 1 and res["slices"]["judged"] == 6


def test_slice_axis_choices():
    assert M.slice_axis((8, 84, 8400)) == 1  # Ultralytics v8
    assert M.slice_axis((8, 25200, 85)) == 2  # v5
    assert M.slice_axis((8, 21, 64, 64)) == 1  # NCHW maps
    assert M.slice_axis((8, 64, 64, 21), layout="NHWC") == 3
    assert M.slice_axis((8, 10)) is None  # classifier rows: top-k
    assert M.slice_axis((8, 1, 64, 64)) is None  # one channel: nothing to slice
    assert M.slice_axis((8, 5000, 6000)) is None  # more than MAX_SLICES


def test_the_table_is_the_registry_and_drives_thresholds_and_parsing():
    table = M.table()
    for name in ("cosine", "sqnr_db", "max_abs", "mean_abs", "max_rel_err", "range_err", "int_equal", "top1", "top5",
                 "det_f1", "det_map50", "seq_equal", "seg_miou", "accuracy_drop_pp"):
        assert isinstance(table[name], Metric), name
    assert [m.name for m in table.values() if m.per_slice] == ["cosine", "range_err"]
    assert set(M.known_thresholds()) == set(table)
    # E: the edge budgets
    assert thresholds_for("int8")["top1"] == 0.98 and thresholds_for("int8-dynamic")["top1"] == 0.98
    assert thresholds_for("int8")["accuracy_drop_pp"] == 2.0
    assert "max_rel_err" not in thresholds_for("int8") and thresholds_for("fp32")["max_rel_err"] == 1e-3
    assert thresholds_for("w4a16") == thresholds_for("int8")  # a precision no row names: the int8 gates
    assert M.parse_thresholds(["cosine=0.99", "det_f1=0.8"]) == {"cosine": 0.99, "det_f1": 0.8}
    assert thresholds_for("int8", {"top1": 0.9})["top1"] == 0.9
    with pytest.raises(BadInput) as e:
        M.parse_thresholds(["cosin=0.9"])
    assert "unknown metric 'cosin'" in e.value.one_line() and "did you mean 'cosine'" in e.value.one_line()
    with pytest.raises(BadInput, match="is not a number"):
        M.parse_thresholds(["cosine=high"])
    with pytest.raises(BadInput, match="NAME=VALUE"):
        M.parse_thresholds(["cosine"])
    with pytest.raises(BadInput, match="unknown metric"):
        thresholds_for("int8", {"sqnr": 3.0})
    assert M.format_metric("cosine", 0.5) == "0.500000" and M.format_metric("sqnr_db", 12.345) == "12.3"
    assert M.format_metric("cosine", None) == "-"
    assert M.gate_text("range_err", 0.25) == "range err ≤ 0.25" and M.gate_text("top1", 0.98) == "top-1 ≥ 0.98"


def test_a_new_metric_is_one_record():
    """A plugin's row is computed for every output, gated at its precision and parsed by --threshold."""
    from edgeconv.plugins import register_plugin, unregister_plugin

    def p99(ref, out):
        return float(np.percentile(np.abs(out.astype(np.float64) - ref), 99))

    class Plugin:
        @staticmethod
        def register_metrics(register):
            register(Metric("p99_abs", "p99 abs", "lower", p99, {"int8": 0.05}, ".3g"))

    from edgeconv.hookspecs import hookimpl

    Plugin.register_metrics = hookimpl(Plugin.register_metrics)
    register_plugin(Plugin, "test-p99")
    try:
        assert registry().metrics["p99_abs"].plugin == "test-p99"
        ref = np.linspace(0, 1, 200, dtype=np.float32).reshape(2, 100)
        res = compare("y", ref, ref + 0.1, thresholds_for("int8"))
        assert res["p99_abs"] == pytest.approx(0.1) and not res["pass"]
        assert "p99 abs 0.1 > 0.05" in res["failures"]
        assert M.parse_thresholds(["p99_abs=0.2"]) == {"p99_abs": 0.2}
        assert compare("y", ref, ref + 0.1, thresholds_for("int8", {"p99_abs": 0.2}))["pass"]
    finally:
        unregister_plugin("test-p99")
    assert "p99_abs" not in M.table()


def test_int8_top1_gate_is_the_edge_budget():
    """3 of 64 labels flipped (95 %) passed under the old 0.8 gate; the int8 gate is now 0.98."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 10)).astype(np.float32)
    out = ref.copy()
    for i in range(3):
        top = ref[i].argmax()
        out[i, top] = ref[i].min() - 1
    res = compare("logits", ref, out, thresholds_for("int8", {"cosine": 0.5, "sqnr_db": 0, "range_err": 10}))
    assert res["top1"] == pytest.approx(61 / 64) and not res["pass"]
    assert any("top-1 0.953 < 0.98" in f for f in res["failures"])


def test_report_fields_keep_their_names():
    """Reports, budgets and plugins read these keys."""
    ref = np.random.default_rng(2).standard_normal((4, 10)).astype(np.float32)
    res = compare("y", ref, ref, thresholds_for("fp32"))
    for key in ("name", "shape", "shape_ok", "dtype_ok", "dtype", "nan_or_inf", "cosine", "sqnr_db", "max_abs",
                "mean_abs", "max_rel_err", "range_err", "topk_agreement", "pass", "failures"):
        assert key in res, key
    assert res["topk_agreement"] == {"top1": 1.0, "top5": 1.0}
    # a detector map's last axis is not a set of classes: no top-k
    assert compare("m", yolo_like(), yolo_like(), thresholds_for("fp32"))["topk_agreement"] is None


def test_what_the_reports_print_comes_from_the_table():
    ref = yolo_like()
    bad = compare("output0", ref, int8_per_tensor(ref), thresholds_for("int8"))
    names = [n for n, _ in M.columns([bad])]
    assert names[:4] == ["cosine", "sqnr_db", "max_abs", "mean_abs"] and "range_err" in names and "top1" not in names
    text = M.slice_text(bad)
    assert text.startswith(f"{bad['slices']['worst']['index']} of 7 (axis 1): cosine ") and "range err" in text
    assert M.slice_text({"name": "x"}) == ""
    task = {"metrics": {"det_f1": 0.5, "det_map50": 0.95}, "gates": {"det_f1": 0.9}}
    assert M.task_rows(task) == [("detection F1", "0.500", "detection F1 ≥ 0.9", False),
                                 ("mAP@0.5 vs source", "0.950", "", None)]


def test_the_documented_thresholds_are_the_table():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "fidelity.md").read_text(encoding="utf-8")
    section = doc.split("## Default thresholds", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = M.table()
    documented = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")
        assert cells[1] == table[name].better, name
        documented[name] = {p: float(v) for p, v in zip(("fp32", "fp16", "bf16", "int8"), cells[2:6], strict=True) if v}
    gated = {m.name for m in table.values() if m.thresholds}
    assert set(documented) == gated
    for name in gated:
        want = {p: v for p, v in table[name].thresholds.items() if p != "int8-dynamic"}
        assert documented[name] == want, name
        assert table[name].thresholds.get("int8-dynamic") == table[name].thresholds.get("int8"), name
