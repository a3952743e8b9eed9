"""The built-in task checks (registered by ``edgeconv.builtins.fidelity``): decode both models' outputs the way a
deployment reads them and compare the answers.

Each ``compare(refs, outs, *, io, labels, options)`` gets every output of the source (``refs``) and of the
artifact (``outs``) by name, samples stacked on the first axis, and returns ``{"metrics": {name: value}, ...}``
with the task rows of the metric table (the core gates them), an ``accuracy`` entry when labels were given, and
``failures`` for what it could not check. ``suggest(io)`` says why the task fits a model's outputs, or None.

Only ``edgeconv.plugin`` is imported here; numpy inside the functions.
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import BadInput

STRIDES = (4, 8, 16, 32, 64)


# -- helpers -------------------------------------------------------------------------------------------------
def _pick(refs: dict[str, Any], options: dict[str, Any], fits: Any, what: str) -> str:
    name = options.get("output")
    if name is not None:
        if name not in refs:
            raise BadInput(f"task option output={name!r}: the model has no such output (it has: {', '.join(refs)})",
                           stage="verify")
        return name
    for key, value in refs.items():
        if fits(value):
            return key
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in refs.items())
    raise BadInput(f"no output looks like {what} (outputs: {shapes}); name one with task option output=NAME",
                   stage="verify")


def _labels(labels: Any, n: int, shape: str, check: Any) -> Any:
    import numpy as np

    if labels is None:
        return None
    arr = np.asarray(labels)
    if len(arr) != n or not check(arr):
        raise BadInput(f"labels of shape {list(arr.shape)} do not fit this task: it needs {shape} for the {n} "
                       "samples verified", stage="verify")
    return arr


def _accuracy(metric: str, source: float, artifact: float, n: int) -> dict[str, Any]:
    return {"metric": metric, "samples": n, "source": source, "artifact": artifact,
            "drop_pp": round((source - artifact) * 100, 4)}


def _image_hw(io: Any) -> tuple[int, int] | None:
    """(H, W) of the model's first image input [N, C, H, W] / [N, H, W, C], when static."""
    for spec in io.inputs:
        shape = tuple(spec.shape)
        if len(shape) != 4:
            continue
        layout = spec.layout or ("NHWC" if isinstance(shape[3], int) and shape[3] in (1, 3, 4)
                                 and not (isinstance(shape[1], int) and shape[1] in (1, 3, 4)) else "NCHW")
        h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return h, w
    return None


def _dims(spec: Any) -> tuple[Any, ...]:
    return tuple(spec.shape)


# -- classification -----------------------------------------------------------------------------------------
def _class_rows(x: Any) -> bool:
    return x.dtype.kind == "f" and x.ndim == 2 and x.shape[-1] >= 2


def classification(refs: dict[str, Any], outs: dict[str, Any], *, io: Any, labels: Any, options: dict[str, Any]
                   ) -> dict[str, Any]:
    import numpy as np

    name = _pick(refs, options, lambda x: x.dtype.kind == "f" and x.ndim >= 2 and x.shape[-1] >= 2,
                 "class scores [N, classes]")
    r = refs[name].reshape(len(refs[name]), -1, refs[name].shape[-1])[:, 0, :].astype(np.float64)
    o = outs[name].reshape(r.shape).astype(np.float64)
    top_ref = r.argmax(-1)
    metrics = {"top1": float((o.argmax(-1) == top_ref).mean())}
    if r.shape[-1] >= 5:
        metrics["top5"] = float((np.argsort(-o, axis=-1)[:, :5] == top_ref[:, None]).any(-1).mean())
    res: dict[str, Any] = {"output": name, "metrics": metrics, "samples": len(r)}
    lab = _labels(labels, len(r), "[N] class indices", lambda a: a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1))
    if lab is not None:
        lab = lab.reshape(-1)
        res["accuracy"] = _accuracy("top-1 accuracy", float((top_ref == lab).mean()),
                                    float((o.argmax(-1) == lab).mean()), len(lab))
    return res


def suggest_classification(io: Any) -> str | None:
    for spec in io.outputs:
        dims = _dims(spec)
        if len(dims) == 2 and isinstance(dims[1], int) and dims[1] >= 2 and spec.dtype.startswith("float"):
            return f"output {spec.name!r} is [batch, {dims[1]}]: one score per class"
    return None


# -- detection ----------------------------------------------------------------------------------------------
def _layout(shape: tuple[int, ...], layout: str) -> str:
    if layout != "auto":
        return layout
    return "xywh_cn" if shape[1] < shape[2] else "xywh_obj"


def decode(arr: Any, layout: str = "auto", conf: float = 0.25, iou: float = 0.45, max_det: int = 300
           ) -> list[tuple[Any, Any, Any]]:
    """Detections per image ``(boxes [K, 4] x1y1x2y2, scores [K], classes [K])`` after NMS per class, from a
    YOLO head: ``xywh_cn`` [B, 4+C, N] (Ultralytics v8 and later: centre x, centre y, width, height, then C class
    scores), ``xywh_obj`` [B, N, 5+C] (v5: the fifth value is objectness, multiplied into the class scores),
    ``xywh_nc`` [B, N, 4+C]."""
    import numpy as np

    if arr.ndim != 3:
        raise BadInput(f"a detection output is [batch, 4+C, N] or [batch, N, 5+C]; this one is {list(arr.shape)}",
                       stage="verify")
    kind = _layout(arr.shape, layout)
    x = np.asarray(arr, dtype=np.float64)
    x = x.transpose(0, 2, 1) if kind == "xywh_cn" else x  # [B, N, values]
    extra = 5 if kind == "xywh_obj" else 4
    if x.shape[2] <= extra:
        raise BadInput(f"a {kind} detection output needs more than {extra} values per anchor; this one is "
                       f"{list(arr.shape)} (task option layout=...)", stage="verify")
    scores = x[:, :, extra:] * (x[:, :, 4:5] if kind == "xywh_obj" else 1.0)
    out = []
    for b in range(len(x)):
        cls = scores[b].argmax(-1)
        best = scores[b][np.arange(len(cls)), cls]
        keep = np.flatnonzero(best >= conf)
        xywh = x[b, keep, :4]
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        sel = nms(boxes, best[keep], cls[keep], iou)[:max_det]
        out.append((boxes[sel], best[keep][sel], cls[keep][sel]))
    return out


def box_iou(a: Any, b: Any) -> Any:
    """IoU matrix [len(a), len(b)] of x1y1x2y2 boxes."""
    import numpy as np

    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area = lambda z: np.clip(z[:, 2:] - z[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: Any, scores: Any, classes: Any, iou: float) -> Any:
    """Greedy NMS per class: the indices kept, best score first."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while len(order):
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        same = classes[rest] == classes[i]
        overlap = box_iou(boxes[i : i + 1], boxes[rest])[0] > iou
        order = rest[~(same & overlap)]
    return np.asarray(kept, dtype=np.int64)


def _match(pred: tuple[Any, Any, Any], truth: tuple[Any, Any], iou: float) -> Any:
    """True positive flag per prediction (best score first): the same class and IoU ≥ ``iou`` with a truth box
    not matched yet."""
    import numpy as np

    boxes, scores, classes = pred
    t_boxes, t_classes = truth
    order = np.argsort(-scores, kind="stable")
    tp = np.zeros(len(scores), dtype=bool)
    used = np.zeros(len(t_boxes), dtype=bool)
    ious = box_iou(boxes, t_boxes) if len(boxes) and len(t_boxes) else np.zeros((len(boxes), len(t_boxes)))
    for i in order:
        cand = np.flatnonzero((t_classes == classes[i]) & ~used & (ious[i] >= iou))
        if len(cand):
            j = cand[ious[i, cand].argmax()]
            used[j] = tp[i] = True
    return tp


def average_precision(preds: list[tuple[Any, Any, Any]], truths: list[tuple[Any, Any]], iou: float = 0.5
                      ) -> float | None:
    """mAP at ``iou`` (all-point interpolated AP per class with truth boxes, averaged); None without truth."""
    import numpy as np

    per_class: dict[int, list[tuple[float, bool]]] = {}
    counts: dict[int, int] = {}
    for pred, truth in zip(preds, truths, strict=True):
        for c in truth[1].tolist():
            counts[int(c)] = counts.get(int(c), 0) + 1
        tp = _match(pred, truth, iou)
        for s, c, t in zip(pred[1].tolist(), pred[2].tolist(), tp.tolist(), strict=True):
            per_class.setdefault(int(c), []).append((s, t))
    aps = []
    for c, n in counts.items():
        hits = sorted(per_class.get(c, []), key=lambda st: -st[0])
        flags = np.array([t for _, t in hits], dtype=np.float64)
        tps = np.cumsum(flags)
        recall = np.concatenate([[0.0], tps / n, [1.0]]) if len(hits) else np.array([0.0, 1.0])
        precision = np.concatenate([[1.0], tps / np.arange(1, len(hits) + 1), [0.0]]) if len(hits) else np.zeros(2)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(((recall[1:] - recall[:-1]) * precision[1:]).sum()))
    return float(np.mean(aps)) if aps else None


def _truth(dets: tuple[Any, Any, Any]) -> tuple[Any, Any]:
    return dets[0], dets[2]


def _label_boxes(lab: Any) -> list[tuple[Any, Any]]:
    import numpy as np

    out = []
    for rows in lab:
        rows = rows[rows[:, 0] >= 0]
        out.append((rows[:, 1:5].astype(np.float64), rows[:, 0].astype(np.int64)))
    return out


def detection(refs: dict[str, Any], outs: dict[str, Any], *, io: Any, labels: Any, options: dict[str, Any]
              ) -> dict[str, Any]:
    name = _pick(refs, options, lambda x: x.dtype.kind == "f" and x.ndim == 3, "a detection head [1, 4+C, N]")
    kw = {k: options[k] for k in ("layout", "conf", "iou", "max_det") if options.get(k) is not None}
    src = decode(refs[name], **kw)
    art = decode(outs[name], **kw)
    match_iou = float(options.get("match_iou") or 0.5)
    tp = sum(int(_match(a, _truth(s), match_iou).sum()) for a, s in zip(art, src, strict=True))
    n_src, n_art = sum(len(s[1]) for s in src), sum(len(a[1]) for a in art)
    f1 = 1.0 if n_src + n_art == 0 else 2 * tp / (n_src + n_art)
    ap = average_precision(art, [_truth(s) for s in src], match_iou)
    metrics = {"det_f1": f1, "det_map50": 1.0 if ap is None and n_art == 0 else (ap or 0.0)}
    res: dict[str, Any] = {
        "output": name, "metrics": metrics, "layout": _layout(refs[name].shape, kw.get("layout", "auto")),
        "detections": {"source": n_src, "artifact": n_art, "matched": tp}, "samples": len(src),
    }
    if n_src == 0:
        res["warnings"] = [f"the source made no detection on the {len(src)} verification samples (score ≥ "
                           f"{kw.get('conf', 0.25)}): the detection check compares nothing; give --data with objects"]
    lab = _labels(labels, len(src), "[N, M, 5] boxes (class, x1, y1, x2, y2; class < 0 pads)",
                  lambda a: a.ndim == 3 and a.shape[2] == 5 and a.dtype.kind in "iuf")
    if lab is not None:
        truth = _label_boxes(lab)
        res["accuracy"] = _accuracy("mAP@0.5", average_precision(src, truth, 0.5) or 0.0,
                                    average_precision(art, truth, 0.5) or 0.0, len(truth))
    return res


def anchor_grid(n: int, hw: tuple[int, int]) -> tuple[list[int], int] | None:
    """The strides whose grids over an H×W input hold ``n`` anchors in all (YOLO heads concatenate them), and the
    anchors per cell (1: v8 and later; 3: v5)."""
    import itertools
    import math

    h, w = hw
    cells = {s: math.ceil(h / s) * math.ceil(w / s) for s in STRIDES}
    for per_cell in (1, 3):
        for k in range(1, len(STRIDES) + 1):
            for combo in itertools.combinations(STRIDES, k):
                if per_cell * sum(cells[s] for s in combo) == n:
                    return list(combo), per_cell
    return None


def suggest_detection(io: Any) -> str | None:
    hw = _image_hw(io)
    if hw is None:
        return None
    for spec in io.outputs:
        dims = _dims(spec)
        if len(dims) != 3 or not all(isinstance(d, int) for d in dims[1:]):
            continue
        for n, k, layout in ((dims[2], dims[1], "[1, 4+C, N]"), (dims[1], dims[2], "[1, N, 5+C]")):
            grid = anchor_grid(n, hw) if k >= 5 else None
            if grid:
                per = f", {grid[1]} per cell" if grid[1] > 1 else ""
                return (f"output {spec.name!r} is {list(dims)}: {k} values for each of {n} anchors (grids at stride "
                        f"{'/'.join(map(str, grid[0]))} over the {hw[0]}×{hw[1]} input{per}): a YOLO head {layout}")
    return None


# -- sequences (CTC) ----------------------------------------------------------------------------------------
def greedy_ctc(arr: Any, blank: int = 0, time_axis: int = 1) -> list[list[int]]:
    """Best class per step, repeats merged, blanks dropped: one list of class indices per sample."""
    import numpy as np

    x = np.asarray(arr)
    if x.ndim != 3:
        raise BadInput(f"a CTC output is [N, T, classes] (or [T, N, classes]); this one is {list(x.shape)}",
                       stage="verify")
    best = np.moveaxis(x, time_axis, 1).argmax(-1)  # [N, T]
    out = []
    for row in best:
        seq, prev = [], None
        for c in row.tolist():
            if c != prev and c != blank:
                seq.append(c)
            prev = c
        out.append(seq)
    return out


def edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _agree(a: list[int], b: list[int]) -> float:
    return 1.0 - edit_distance(a, b) / max(len(a), len(b)) if (a or b) else 1.0


def ctc(refs: dict[str, Any], outs: dict[str, Any], *, io: Any, labels: Any, options: dict[str, Any]
        ) -> dict[str, Any]:
    name = _pick(refs, options, lambda x: x.dtype.kind == "f" and x.ndim == 3, "a sequence [N, T, classes]")
    blank, axis = int(options.get("blank") or 0), int(options.get("time_axis", 1) if options.get("time_axis")
                                                            is not None else 1)
    src, art = greedy_ctc(refs[name], blank, axis), greedy_ctc(outs[name], blank, axis)
    equal = sum(a == s for a, s in zip(art, src, strict=True))
    res: dict[str, Any] = {"output": name, "samples": len(src), "metrics": {
        "seq_equal": equal / len(src) if src else 1.0,
        "seq_char_agree": sum(_agree(a, s) for a, s in zip(art, src, strict=True)) / len(src) if src else 1.0}}
    differ = [i for i, (a, s) in enumerate(zip(art, src, strict=True)) if a != s]
    if differ:
        i = differ[0]
        res["first_difference"] = {"sample": i, "source": src[i], "artifact": art[i]}
    lab = _labels(labels, len(src), "[N, L] class indices (< 0 pads)", lambda a: a.ndim == 2 and a.dtype.kind in "iu")
    if lab is not None:
        truth = [[int(c) for c in row if c >= 0] for row in lab]
        res["accuracy"] = _accuracy("sequence accuracy", sum(s == t for s, t in zip(src, truth, strict=True)) / len(truth),
                                    sum(a == t for a, t in zip(art, truth, strict=True)) / len(truth), len(truth))
    return res


def suggest_ctc(io: Any) -> str | None:
    hw = _image_hw(io)
    for spec in io.outputs:
        dims = _dims(spec)
        if len(dims) != 3 or not isinstance(dims[2], int) or dims[2] < 3:
            continue
        steps = dims[1]
        if not isinstance(steps, int):
            return f"output {spec.name!r} is {list(dims)}: a sequence of {dims[2]} class scores per step"
        if hw and any(hw[1] // s == steps for s in STRIDES[:4] + (2,)):
            return (f"output {spec.name!r} is {list(dims)}: {steps} steps across the {hw[1]}-pixel-wide input, "
                    f"{dims[2]} class scores each: a sequence for CTC decoding")
    return None


# -- segmentation -------------------------------------------------------------------------------------------
def _masks(x: Any, layout: str | None, threshold: float) -> Any:
    import numpy as np

    if x.ndim == 3 and x.dtype.kind in "iub":
        return x.astype(np.int64)
    if x.ndim != 4:
        raise BadInput(f"a segmentation output is [N, C, H, W] scores or [N, H, W] masks; this one is {list(x.shape)}",
                       stage="verify")
    axis = 3 if layout == "NHWC" else 1
    if x.shape[axis] == 1:
        plane = np.take(x, 0, axis=axis)
        cut = threshold if (plane.min() >= 0 and plane.max() <= 1) else 0.0
        return (plane > cut).astype(np.int64)
    return x.argmax(axis)


def miou(a: Any, b: Any) -> float:
    """Mean IoU over the classes present in either mask set."""
    import numpy as np

    ious = []
    for c in np.union1d(np.unique(a), np.unique(b)).tolist():
        inter = np.logical_and(a == c, b == c).sum()
        union = np.logical_or(a == c, b == c).sum()
        ious.append(inter / union if union else 1.0)
    return float(np.mean(ious)) if ious else 1.0


def segmentation(refs: dict[str, Any], outs: dict[str, Any], *, io: Any, labels: Any, options: dict[str, Any]
                 ) -> dict[str, Any]:
    name = _pick(refs, options, lambda x: x.ndim == 4 or (x.ndim == 3 and x.dtype.kind in "iub"),
                 "masks [N, C, H, W]")
    spec = next((o for o in (io.outputs if io is not None else ()) if o.name == name), None)
    layout = getattr(spec, "layout", None)
    cut = float(options.get("threshold") or 0.5)
    src, art = _masks(refs[name], layout, cut), _masks(outs[name], layout, cut)
    res: dict[str, Any] = {"output": name, "samples": len(src), "metrics": {"seg_miou": miou(src, art)},
                           "pixels_agree": float((src == art).mean())}
    lab = _labels(labels, len(src), f"[N, {', '.join(map(str, src.shape[1:]))}] class masks",
                  lambda a: a.shape[1:] == src.shape[1:] and a.dtype.kind in "iub")
    if lab is not None:
        res["accuracy"] = _accuracy("mIoU", miou(src, lab), miou(art, lab), len(lab))
    return res


def suggest_segmentation(io: Any) -> str | None:
    hw = _image_hw(io)
    if hw is None:
        return None
    for spec in io.outputs:
        dims = _dims(spec)
        layout = spec.layout or "NCHW"
        if len(dims) == 4:
            c, h, w = (dims[3], dims[1], dims[2]) if layout == "NHWC" else (dims[1], dims[2], dims[3])
        elif len(dims) == 3 and not spec.dtype.startswith("float"):
            c, h, w = 1, dims[1], dims[2]
        else:
            continue
        for f in (1, 2, 4, 8):
            if (h, w) == (hw[0] // f, hw[1] // f):
                scale = "" if f == 1 else f" (1/{f})"
                return (f"output {spec.name!r} is {list(dims)}: {c} map(s) at the input's {hw[0]}×{hw[1]}{scale}: "
                        "a mask per pixel")
    return None
