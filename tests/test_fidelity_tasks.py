"""Task checks (``--task``, Comparator records): decoding, the answers compared, labels, options and the
suggestion from the output shapes (issue 17 section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeconv.builtins import tasks
from edgeconv.errors import BadInput
from edgeconv.inspect import inspect_model, suggested_task
from edgeconv.model import IOContract, TensorSpec
from edgeconv.verification import comparators
from edgeconv.verification.metrics import thresholds_for


def head(objects: list[tuple[int, float, float, float, float, float]], classes: int = 3, anchors: int = 400
         ) -> np.ndarray:
    """A YOLO v8 output [1, 4+C, N] with low noise scores and, per object (anchor, class, cx, cy, w, h), a strong
    anchor and a weaker duplicate next to it (what NMS removes)."""
    rng = np.random.default_rng(0)
    x = np.zeros((1, 4 + classes, anchors), dtype=np.float32)
    x[0, :4] = rng.uniform(10, 300, (4, anchors))
    x[0, 4:] = rng.uniform(0, 0.05, (classes, anchors))
    for a, c, cx, cy, w, h in objects:
        x[0, :4, a] = (cx, cy, w, h)
        x[0, 4 + c, a] = 0.9
        x[0, :4, a + 1] = (cx + 2, cy + 1, w, h)
        x[0, 4 + c, a + 1] = 0.6
    return x


OBJECTS = [(10, 0, 50.0, 60.0, 40.0, 40.0), (100, 2, 200.0, 150.0, 80.0, 60.0), (300, 1, 280.0, 280.0, 30.0, 30.0)]


def test_decode_nms_and_layouts():
    x = head(OBJECTS)
    (boxes, scores, classes), = tasks.decode(x)
    assert len(boxes) == 3  # the duplicates are suppressed
    assert sorted(classes.tolist()) == [0, 1, 2]
    i = classes.tolist().index(2)
    assert boxes[i].tolist() == pytest.approx([160, 120, 240, 180])
    # v5 [1, N, 5+C]: objectness multiplies the class scores
    v5 = np.concatenate([x[:, :4], np.ones((1, 1, 400), np.float32), x[:, 4:]], axis=1).transpose(0, 2, 1)
    assert len(tasks.decode(v5)[0][0]) == 3
    v5[0, :, 4] = 0.2  # objectness low everywhere: nothing above conf 0.25
    assert len(tasks.decode(v5)[0][0]) == 0
    # [1, N, 4+C] must be named
    nc = x.transpose(0, 2, 1)
    assert len(tasks.decode(nc, "xywh_nc")[0][0]) == 3
    with pytest.raises(BadInput, match="detection output"):
        tasks.decode(x[0])


def run_task(name, refs, outs, io=None, labels=None, options=None, precision="int8"):
    comp, opts = comparators.resolve(name, options)
    return comparators.run(comp, opts, refs, outs, io=io, labels=labels, thresholds=thresholds_for(precision))


def test_detection_agreement_fails_when_detections_vanish_and_passes_when_equal():
    ref = np.concatenate([head(OBJECTS), head(OBJECTS[:1])])
    same = run_task("detection", {"output0": ref}, {"output0": ref.copy()})
    assert same["pass"] and same["metrics"] == {"det_f1": 1.0, "det_map50": 1.0}
    assert same["detections"] == {"source": 4, "artifact": 4, "matched": 4} and same["layout"] == "xywh_cn"
    out = ref.copy()
    out[:, 4:] = np.where(out[:, 4:] > 0.7, 1.25, 0.0)  # one INT8 scale of ~1.25 for the whole tensor
    out[0, 4 + 1, 300] = 0.0  # and one object lost
    bad = run_task("detection", {"output0": ref}, {"output0": out})
    assert not bad["pass"]
    assert bad["metrics"]["det_f1"] == pytest.approx(2 * 3 / 7)  # 4 source detections, 3 artifact, all 3 matched
    assert any(f.startswith("detection F1 0.857 < 0.95") for f in bad["failures"])
    assert bad["gates"] == {"det_f1": 0.95, "det_map50": 0.95}


def test_detection_against_labelled_boxes():
    ref = np.concatenate([head(OBJECTS), head(OBJECTS[:1])])
    labels = np.full((2, 3, 5), -1, np.float32)
    labels[0] = [[0, 30, 40, 70, 80], [2, 160, 120, 240, 180], [1, 265, 265, 295, 295]]
    labels[1, 0] = [0, 30, 40, 70, 80]
    out = ref.copy()
    out[0, 4 + 2, 100:102] = 0.0  # the artifact misses one labelled object
    res = run_task("detection", {"output0": ref}, {"output0": out}, labels=labels)
    acc = res["accuracy"]
    assert acc["metric"] == "mAP@0.5" and acc["source"] == pytest.approx(1.0) and acc["artifact"] < 1.0
    assert acc["drop_pp"] > 2
    with pytest.raises(BadInput) as e:
        run_task("detection", {"output0": ref}, {"output0": ref}, labels=np.array([0, 1]))
    assert "[N, M, 5] boxes" in e.value.one_line() and "\n" not in e.value.one_line()


def test_no_detection_at_all_is_said():
    ref = np.zeros((1, 7, 400), np.float32)
    res = run_task("detection", {"o": ref}, {"o": ref})
    assert res["pass"] and res["detections"]["source"] == 0
    assert "compares nothing" in res["warnings"][0]


def test_ctc_strings_equal():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 20, 12)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    seqs = tasks.greedy_ctc(probs)
    assert all(0 not in s for s in seqs)  # blanks dropped
    assert run_task("ctc", {"y": probs}, {"y": probs.copy()}, precision="fp32")["metrics"]["seq_equal"] == 1.0
    out = probs.copy()
    t = 5
    out[1, t] = np.roll(out[1, t], 3)  # one step's best class changes in sample 1
    res = run_task("ctc", {"y": probs}, {"y": out}, precision="fp32")
    assert tasks.greedy_ctc(out)[1] != seqs[1]
    assert res["metrics"]["seq_equal"] == 0.75 and not res["pass"]
    assert res["first_difference"]["sample"] == 1 and 0 < res["metrics"]["seq_char_agree"] < 1
    assert tasks.greedy_ctc(np.array([[[0, 1.0, 0], [0, 1.0, 0], [1.0, 0, 0], [0, 1.0, 0]]]))[0] == [1, 1]
    labels = np.full((4, 20), -1)
    for i, s in enumerate(seqs):
        labels[i, : len(s)] = s
    assert run_task("ctc", {"y": probs}, {"y": out}, labels=labels)["accuracy"]["drop_pp"] == 25.0


def test_segmentation_iou():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    assert run_task("segmentation", {"m": maps}, {"m": maps})["metrics"]["seg_miou"] == 1.0
    out = maps.copy()
    out[:, 2] += 3.0  # class 2 takes most pixels
    res = run_task("segmentation", {"m": maps}, {"m": out})
    assert res["metrics"]["seg_miou"] < 0.6 and not res["pass"]
    binary = rng.uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    assert tasks.miou(tasks._masks(binary, None, 0.5), (binary[:, 0] > 0.5).astype(int)) == 1.0


def test_classification_task_and_its_labels():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((20, 10)).astype(np.float32)
    labels = ref.argmax(1)
    res = run_task("classification", {"logits": ref}, {"logits": ref}, labels=labels)
    assert res["metrics"] == {"top1": 1.0, "top5": 1.0} and res["accuracy"]["source"] == 1.0
    with pytest.raises(BadInput, match="class indices"):
        run_task("classification", {"logits": ref}, {"logits": ref}, labels=np.zeros((20, 10)))


def test_task_and_option_errors_are_one_line():
    with pytest.raises(BadInput) as e:
        comparators.resolve("detect", None)
    assert "did you mean 'detection'" in e.value.one_line()
    with pytest.raises(BadInput) as e:
        comparators.resolve("detection", {"confidence": 0.3})
    assert "task option 'confidence' is not known" in e.value.one_line() and "conf" in e.value.one_line()
    with pytest.raises(BadInput, match="must be float"):
        comparators.resolve("detection", {"conf": "high"})
    with pytest.raises(BadInput, match="one of auto, xywh_cn"):
        comparators.resolve("detection", {"layout": "yolo"})
    assert comparators.resolve("detection", {"conf": "0.5", "axis": "1"})[1]["conf"] == 0.5
    assert comparators.resolve(None, {"axis": "output0:2,mask:1"})[1]["axis"] == {"output0": 2, "mask": 1}
    with pytest.raises(BadInput, match="only task option"):
        comparators.resolve(None, {"conf": 0.5})
    comp, opts = comparators.resolve("detection", {"output": "nope"})
    with pytest.raises(BadInput, match="no such output"):
        comparators.run(comp, opts, {"o": np.zeros((1, 7, 4))}, {"o": np.zeros((1, 7, 4))}, io=None, labels=None,
                        thresholds={})


def io(inputs, outputs):
    return IOContract(inputs=tuple(TensorSpec(n, s, "float32") for n, s in inputs),
                      outputs=tuple(TensorSpec(n, s, "float32") for n, s in outputs))


@pytest.mark.parametrize(("contract", "task", "words"), [
    (io([("images", (1, 3, 320, 320))], [("output0", (1, 7, 400))]), "detection", "400 anchors"),
    (io([("images", (1, 3, 640, 640))], [("output0", (1, 84, 8400))]), "detection", "8/16/32"),
    (io([("images", (1, 3, 640, 640))], [("output", (1, 25200, 85))]), "detection", "3 per cell"),
    (io([("x", (1, 3, 48, 320))], [("softmax", (1, 40, 97))]), "ctc", "40 steps"),
    (io([("x", (1, 3, 256, 256))], [("masks", (1, 21, 256, 256))]), "segmentation", "21 map(s)"),
    (io([("x", (1, 3, 224, 224))], [("logits", (1, 1000))]), "classification", "[batch, 1000]"),
])
def test_suggestions_from_output_shapes(contract, task, words):
    s = suggested_task(contract)
    assert s["name"] == task and words in s["reason"], s


def test_no_suggestion_for_a_plain_tensor():
    assert suggested_task(io([("x", (1, 16))], [("y", (1, 1, 16))])) is None


def test_inspect_reports_the_suggested_task(digits):
    rep = inspect_model(str(digits["model"]))
    assert rep["suggested_task"]["name"] == "classification"
    assert "'logits' is [batch, 10]" in rep["suggested_task"]["reason"]
