"""Built-in plugin: the metric table of the fidelity contract and the task checks (docs/fidelity.md).

Each ``Metric`` is one row: its name, which way is better, its gate per precision (a precision not named: reported,
not gated) and how it prints. ``verify.metrics`` computes every row for every output (and the ``per_slice`` rows
for every slice of it along its channel axis), gates them, and both reports print them by the row's format.
Adding a metric is adding a row here (or in any plugin's ``register_metrics``).

A metric's ``compute(ref, out)`` gets the source's and the artifact's output (numpy arrays of one shape, their own
dtypes; NaN/Inf the two agree on are zeroed) and returns a float, ``None`` when it does not apply to this output,
or ``(value, detail)`` where ``detail`` is the failure text (``{limit}`` is filled in). The task rows (``det_f1``,
``seq_equal``, ...) are computed by the task checks (``Comparator``, in ``edgeconv.builtins.tasks``); their
``compute`` returns ``None`` for a single output.

Only ``edgeconv.plugin`` is imported here; numpy is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import Comparator, Metric, Option, hookimpl

EDGECONV_API = "1.0"

ALL = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")


def _f64(x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=np.float64).ravel()


def _is_number(x: Any) -> bool:
    return x.dtype.kind in "biuf"


def cosine(ref: Any, out: Any) -> float | None:
    """Cosine similarity of the flattened outputs (1.0 when both are all zero)."""
    import numpy as np

    if not _is_number(ref):
        return None
    r, o = _f64(ref), _f64(out)
    nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
    if nr == 0 and no == 0:
        return 1.0
    return float(r @ o / (nr * no)) if nr and no else 0.0


def sqnr_db(ref: Any, out: Any) -> float | None:
    """10·log10(Σref² / Σ(out−ref)²), capped at ±200 dB."""
    import numpy as np

    if not _is_number(ref):
        return None
    r, o = _f64(ref), _f64(out)
    d = o - r
    noise, signal = float(d @ d), float(r @ r)
    if noise == 0:
        return 200.0
    return min(float(10 * np.log10(signal / noise)), 200.0) if signal else -200.0


def max_abs(ref: Any, out: Any) -> float | None:
    import numpy as np

    if not _is_number(ref):
        return None
    d = np.abs(_f64(out) - _f64(ref))
    return float(d.max()) if d.size else 0.0


def mean_abs(ref: Any, out: Any) -> float | None:
    import numpy as np

    if not _is_number(ref):
        return None
    d = np.abs(_f64(out) - _f64(ref))
    return float(d.mean()) if d.size else 0.0


def max_rel_err(ref: Any, out: Any) -> Any:
    """The largest absolute error as a share of the source output's largest magnitude (float outputs)."""
    import numpy as np

    if ref.dtype.kind not in "fc":
        return None
    r, o = _f64(ref), _f64(out)
    err = float(np.abs(o - r).max()) if r.size else 0.0
    scale = float(np.abs(r).max()) if r.size else 0.0
    value = err / scale if scale else (0.0 if err == 0 else float("inf"))
    return value, f"max abs error {err:.3g} is {value:.2g} of the output's range > {{limit:g}}"


def range_err(ref: Any, out: Any) -> Any:
    """The largest absolute error as a share of the source's range (max − min) of this output or slice: a slice
    whose values span 0..1 inside an output that spans 0..320 is judged against its own 0..1."""
    import numpy as np

    if ref.dtype.kind not in "fc" or not ref.size:
        return None
    r, o = _f64(ref), _f64(out)
    err = float(np.abs(o - r).max())
    lo, hi = float(r.min()), float(r.max())
    span = hi - lo
    if span == 0:
        span = abs(hi)
    value = err / span if span else (0.0 if err == 0 else float("inf"))
    return value, f"max abs error {err:.3g} is {value:.2g} of the source's range {lo:.3g}..{hi:.3g} > {{limit:g}}"


def int_equal(ref: Any, out: Any) -> Any:
    """The share of an integer or boolean output's values equal to the source's."""
    import numpy as np

    if ref.dtype.kind not in "iub":
        return None
    differ = int((np.asarray(ref).ravel() != np.asarray(out).ravel()).sum())
    return (1.0 - differ / ref.size if ref.size else 1.0), f"{differ} of {ref.size} integer values differ"


def _classes(ref: Any) -> Any:
    """The rows [rows, classes] of a classifier-like output, or None: an output [N, classes], or one whose rows are
    probability distributions (softmax: a CTC sequence [N, T, classes]). On other outputs (a detector's map,
    boxes [N, anchors, xywh+scores]) the last axis is not a set of classes."""
    import numpy as np

    if ref.dtype.kind != "f" or ref.ndim < 2 or ref.shape[-1] < 2 or not ref.size:
        return None
    rows = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    if ref.ndim == 2:
        return rows
    if (rows >= -1e-6).all() and np.allclose(rows.sum(-1), 1.0, atol=1e-3):
        return rows
    return None


def top1(ref: Any, out: Any) -> float | None:
    """Share of rows whose top-1 class is the source's. Ties: a row whose maxima are equal up to float32 rounding
    (a saturated sigmoid, a zero row) has no single top-1; the artifact's pick agrees when the source ranks it
    first."""
    import numpy as np

    rr = _classes(ref)
    if rr is None:
        return None
    oo = np.asarray(out).reshape(rr.shape)
    top_ref = rr.argmax(-1)
    tie = 1e-6 * max(float(np.abs(np.where(np.isfinite(rr), rr, 0.0)).max()), 1e-30)
    pick = oo.argmax(-1)
    rows = np.arange(len(rr))
    return float((rr[rows, pick] >= rr[rows, top_ref] - tie).mean())


def top5(ref: Any, out: Any) -> float | None:
    """Share of rows whose source top-1 is among the artifact's top 5."""
    import numpy as np

    rr = _classes(ref)
    if rr is None or rr.shape[-1] < 5:
        return None
    oo = np.asarray(out).reshape(rr.shape)
    best = np.argsort(-oo, axis=-1)[:, :5]
    return float((best == rr.argmax(-1)[:, None]).any(-1).mean())


def by_task(ref: Any, out: Any) -> None:
    """A task metric: computed by a task check (``--task``) over every output, not per output."""
    return None


def _t(fp32: float, fp16: float, bf16: float, int8: float) -> dict[str, float]:
    return {"fp32": fp32, "fp16": fp16, "bf16": bf16, "int8": int8, "int8-dynamic": int8}


# The gates and their reasons (docs/fidelity.md#default-thresholds).
METRICS = (
    Metric("cosine", "cosine", "higher", cosine, _t(0.9999, 0.999, 0.995, 0.98), ".6f", per_slice=True,
           description="cosine similarity of the flattened outputs; per slice: of every slice that is not flat"),
    Metric("sqnr_db", "SQNR dB", "higher", sqnr_db, _t(40.0, 30.0, 20.0, 12.0), ".1f",
           description="signal-to-quantisation-noise ratio 10·log10(Σref² / Σ(out−ref)²), capped at 200"),
    Metric("max_abs", "max abs", "lower", max_abs, {}, ".3g", description="largest absolute error"),
    Metric("mean_abs", "mean abs", "lower", mean_abs, {}, ".3g", description="mean absolute error"),
    # At fp32 cosine and SQNR let a few values off by 1% pass (OpenVINO's cubic Resize with exclude_outside: 0.1
    # on values up to 16, cosine 0.99995); two fp32 runtimes agree to ~1e-5 of the range.
    Metric("max_rel_err", "max rel err", "lower", max_rel_err, {"fp32": 1e-3}, ".2g",
           description="largest absolute error as a share of the source output's largest magnitude"),
    # Range-normalised error, per slice: the check that catches a slice of small range destroyed by a scale
    # chosen for the whole output (a detector's 0..1 scores concatenated with 0..320 px boxes under one INT8
    # scale). INT8 0.25: a slice whose error reaches a quarter of its range has lost its answers (an intact
    # INT8 slice stays within a few steps of 1/255 of its range plus the network's noise: 0.02-0.12 on the
    # models measured, docs/fidelity.md).
    Metric("range_err", "range err", "lower", range_err, _t(1e-2, 5e-2, 0.1, 0.25), ".3g", per_slice=True,
           description="largest absolute error as a share of the source's range (max − min), per slice too"),
    # int_equal: indices, counts, masks, quantized values: all equal at fp32, where the float metrics let an
    # off-by-one in one value of a few pass (OpenVINO's DynamicQuantizeLinear rounding).
    Metric("int_equal", "int equal", "higher", int_equal, {"fp32": 1.0}, ".4f",
           description="share of an integer or boolean output's values equal to the source's"),
    # int8 0.98: the edge budget (INT8 within ~2% of the source's answers); 0.8 let 3 of 64 labels flip.
    Metric("top1", "top-1", "higher", top1, _t(0.99, 0.98, 0.95, 0.98), ".3f",
           description="share of rows whose top-1 class is the source's ([N, classes] or softmax rows)"),
    Metric("top5", "top-5", "higher", top5, {}, ".3f",
           description="share of rows whose source top-1 is in the artifact's top 5"),
    # Detections: the edge budget (INT8 within a few % of the source's answers) with room for the detections
    # whose score sits at the threshold: one detection gained or lost in 20 at int8.
    Metric("det_f1", "detection F1", "higher", by_task, _t(0.98, 0.98, 0.95, 0.95), ".3f",
           description="detection task: F1 of the artifact's detections (after NMS) against the source's, IoU ≥ 0.5"),
    Metric("det_map50", "mAP@0.5 vs source", "higher", by_task, _t(0.98, 0.98, 0.95, 0.95), ".3f",
           description="detection task: mAP@0.5 of the artifact's detections with the source's as ground truth"),
    Metric("seq_equal", "sequences equal", "higher", by_task, _t(1.0, 0.98, 0.95, 0.95), ".3f",
           description="CTC task: share of samples whose greedy-decoded sequence equals the source's"),
    Metric("seq_char_agree", "characters agree", "higher", by_task, {}, ".3f",
           description="CTC task: 1 − edit distance / length, over every sample"),
    Metric("seg_miou", "mask mIoU vs source", "higher", by_task, _t(0.99, 0.98, 0.95, 0.9), ".3f",
           description="segmentation task: mean IoU per class of the artifact's masks against the source's"),
    # The edge budget: an INT8 accuracy loss within ~2 %; also the ceiling at the float precisions.
    Metric("accuracy_drop_pp", "accuracy drop pp", "lower", by_task, _t(1.0, 2.0, 2.0, 2.0), ".2f",
           description="labelled data: the source's accuracy (or mAP) minus the artifact's, in percentage points"),
)


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)


_OUTPUT = Option("output", str, None, "the output to decode (default: the first that fits)")
COMPARATORS = (
    Comparator("classification", "classification top-k", "edgeconv.builtins.tasks:classification",
               suggest="edgeconv.builtins.tasks:suggest_classification", options=(_OUTPUT,),
               description="top-1 / top-5 agreement of the class scores; accuracy with labels [N] of class indices"),
    Comparator("detection", "detection (decode, NMS, F1 and mAP@0.5 against the source)",
               "edgeconv.builtins.tasks:detection", suggest="edgeconv.builtins.tasks:suggest_detection",
               options=(_OUTPUT,
                        Option("layout", str, "auto", "xywh_cn: [1, 4+C, N] (Ultralytics v8+); xywh_obj: [1, N, 5+C] "
                               "(v5); xywh_nc: [1, N, 4+C]", ("auto", "xywh_cn", "xywh_obj", "xywh_nc")),
                        Option("conf", float, 0.25, "score threshold"),
                        Option("iou", float, 0.45, "NMS IoU threshold"),
                        Option("match_iou", float, 0.5, "IoU at which two detections are the same"),
                        Option("max_det", int, 300, "detections kept per image")),
               description="labels [N, M, 5] (class, x1, y1, x2, y2; class < 0 pads): mAP@0.5 of both models"),
    Comparator("ctc", "sequence (greedy CTC decoding, strings equal)", "edgeconv.builtins.tasks:ctc",
               suggest="edgeconv.builtins.tasks:suggest_ctc",
               options=(_OUTPUT, Option("blank", int, 0, "the blank class index"),
                        Option("time_axis", int, 1, "the axis of time steps ([N, T, C]: 1; [T, N, C]: 0)")),
               description="greedy CTC decoding (best class per step, repeats merged, blanks dropped)"),
    Comparator("segmentation", "segmentation (mask IoU)", "edgeconv.builtins.tasks:segmentation",
               suggest="edgeconv.builtins.tasks:suggest_segmentation",
               options=(_OUTPUT, Option("threshold", float, 0.5, "one-channel masks: foreground above this")),
               description="argmax over the class axis (or a threshold on one channel), mean IoU per class"),
)


@hookimpl
def register_comparators(register):
    for comparator in COMPARATORS:
        register(comparator)
