"""The comparison of the fidelity contract, driven by the metric table (``register_metrics``, docs/fidelity.md).

Every output is compared whole and, when it has a channel axis (or a declared one), slice by slice along it: the
``per_slice`` metrics are computed for every slice that is not flat, and the worst slice gates like the whole
output. ``--threshold NAME=VALUE`` is checked against the table (``parse_thresholds``), and both reports print a
metric by its row (``format_metric``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import BadInput

if TYPE_CHECKING:
    import numpy as np

    from ..records import Metric

# The gates of a precision no metric names (a plugin's own, e.g. "w4a16"): the int8 ones.
FALLBACK_PRECISION = "int8"
# A slice whose source range is below this share of the whole output's range is flat (a class never scored, a
# dead channel): it is not judged alone, the whole-output metrics cover it. A 0..1 score slice inside a 0..320
# box output is 3e-3 of the range: judged.
SLICE_FLOOR = 1e-4
# Outputs with more slices than this along their axis are compared whole only (the report says so).
MAX_SLICES = 4096


def table() -> dict[str, Metric]:
    """The metric table: every registered ``Metric`` by name, in registration order."""
    from ..plugins import registry

    metrics = registry().metrics
    if not metrics:
        raise BadInput("no fidelity metrics are registered (is edgeconv.builtins.fidelity disabled in "
                       "EDGECONV_DISABLE_PLUGINS?)", stage="verify")
    return metrics


def known_thresholds() -> list[str]:
    """The names ``--threshold NAME=VALUE`` accepts: every metric of the table."""
    return list(table())


def parse_thresholds(items: Iterable[str] | None) -> dict[str, float]:
    """``--threshold NAME=VALUE`` items as a dict, each name checked against the metric table."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--threshold {item!r} is not NAME=VALUE (names: {', '.join(known_thresholds())})",
                           stage="options")
        try:
            out[key] = float(value)
        except ValueError:
            raise BadInput(f"--threshold {item!r}: {value!r} is not a number", stage="options") from None
    return check_thresholds(out, what="--threshold")


def check_thresholds(overrides: dict[str, float] | None, what: str = "thresholds") -> dict[str, float]:
    from ..records import did_you_mean

    known = table()
    for key in overrides or {}:
        if key not in known:
            raise BadInput(f"{what}: unknown metric {key!r} (the metric table has: {', '.join(known)})"
                           f"{did_you_mean(key, known)}", stage="options")
    return dict(overrides or {})


def thresholds_for(precision: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The gate of every metric at ``precision`` (the table's), with the user's overrides."""
    known = table()
    named = any(precision in m.thresholds for m in known.values())
    key = precision if named else FALLBACK_PRECISION
    limits = {m.name: float(m.thresholds[key]) for m in known.values() if key in m.thresholds}
    limits.update(check_thresholds(overrides))
    return limits


def format_metric(name: str, value: Any) -> str:
    """A metric's value as the table prints it ("-" when not measured)."""
    if value is None:
        return "-"
    metric = table().get(name)
    try:
        return format(value, metric.format if metric else ".4g")
    except (TypeError, ValueError):
        return str(value)


def gate_text(name: str, limit: float) -> str:
    """``cosine ≥ 0.98``: a gate as the reports print it."""
    metric = table().get(name)
    op = "≤" if metric is not None and metric.better == "lower" else "≥"
    return f"{metric.title if metric else name} {op} {limit:g}"


def columns(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(name, title)`` of every metric of the table that some report entry holds, in table order: the columns of
    the reports' fidelity tables."""
    return [(m.name, m.title) for m in table().values() if any(e.get(m.name) is not None for e in entries)]


def slice_text(entry: dict[str, Any]) -> str:
    """The worst slice of one output as the reports print it: ``4 of 7 (axis 1): cosine 0.384757, range err 0.694``
    ("" when the output was not sliced)."""
    sl = entry.get("slices") or {}
    worst = sl.get("worst")
    if not worst:
        return ""
    rows = table()
    parts = [f"{rows[k].title if k in rows else k} {format_metric(k, v)}" for k, v in worst["metrics"].items()]
    flat = f", {sl['flat']} flat" if sl.get("flat") else ""
    return f"{worst['index']} of {sl['count']} (axis {sl['axis']}{flat}): {', '.join(parts)}"


def task_rows(task: dict[str, Any] | None) -> list[tuple[str, str, str, bool | None]]:
    """``(title, value, gate, passed)`` for every metric of a task section (its gate "" when not gated)."""
    rows = []
    for name, value in ((task or {}).get("metrics") or {}).items():
        gate = (task.get("gates") or {}).get(name)
        metric = table().get(name)
        ok = None if gate is None or metric is None or value is None else metric.passes(float(value), gate)
        rows.append((metric.title if metric else name, format_metric(name, value),
                     gate_text(name, gate) if gate is not None else "", ok))
    return rows


def evaluate(metric: Metric, value: Any, thresholds: dict[str, float]) -> tuple[float | None, str | None]:
    """``(value, failure text or None)`` of one computed metric against its gate."""
    detail = None
    if isinstance(value, tuple):
        value, detail = value
    if value is None:
        return None, None
    value = float(value)
    limit = thresholds.get(metric.name)
    if limit is None or metric.passes(value, limit):
        return value, None
    if detail:
        return value, detail.format(limit=limit)
    op = "<" if metric.better == "higher" else ">"
    return value, f"{metric.title} {format(value, metric.format)} {op} {limit:g}"


def compare(name: str, ref: np.ndarray, out: np.ndarray, thresholds: dict[str, float], *,
            axis: int | None = None, layout: str | None = None) -> dict[str, Any]:
    """Compare one output of the artifact (``out``) with the source's (``ref``): whole, then per slice along
    ``axis`` (default: the channel axis of ``layout``, or of the output's shape; see ``slice_axis``)."""
    import numpy as np

    res: dict[str, Any] = {
        "name": name,
        "shape": list(ref.shape),
        "shape_ok": tuple(ref.shape) == tuple(out.shape),
        "dtype_ok": ref.dtype == out.dtype,
        "dtype": str(out.dtype),
        "nan_or_inf": int((~np.isfinite(out)).sum()) if out.dtype.kind in "fc" else 0,
    }
    failures = []
    if not res["shape_ok"]:
        failures.append(f"shape {list(out.shape)} != {list(ref.shape)}")
    if not res["dtype_ok"]:
        failures.append(f"dtype {out.dtype} != {ref.dtype}")
    if ref.dtype.kind in "OUS" or out.dtype.kind in "OUS":
        failures += _compare_strings(res, ref, out)
    else:
        cleaned, bad = _finite(res, ref, out)
        if bad:
            failures.append(f"{bad} NaN/Inf values" if bad == res["nan_or_inf"] else
                            f"{bad} NaN/Inf values where the source differs")
        if res["shape_ok"] and not bad:
            r, o = cleaned
            failures += _whole(res, r, o, thresholds)
            k = slice_axis(r.shape, layout, axis)
            if k is not None and r.dtype.kind in "fc":
                res["slices"] = compare_slices(r, o, k, thresholds)
                failures += res["slices"]["failures"]
    res["pass"] = not failures
    res["failures"] = failures
    return res


def _compare_strings(res: dict[str, Any], ref: Any, out: Any) -> list[str]:
    """Strings (StringConcat, RegexFullMatch, a tokenizer's output): equal or not, no float metrics."""
    import numpy as np

    res["topk_agreement"] = None
    if not res["shape_ok"]:
        return []
    differ = sum(a != b for a, b in zip(np.asarray(ref).ravel().tolist(), np.asarray(out).ravel().tolist(),
                                        strict=False))
    res["values_differ"] = int(differ)
    return [f"{differ} of {ref.size} string values differ"] if differ else []


def _finite(res: dict[str, Any], ref: Any, out: Any) -> tuple[tuple[Any, Any], int]:
    """NaN always fails. An infinity fails unless the source gives the same infinity at the same place
    (attention scores masked with -inf, log(0)): there the artifact is exact, and the metrics compare the finite
    values (the agreed places are zeroed in both). Found by the operator coverage (Attention's qk_matmul_output)."""
    import numpy as np

    bad = res["nan_or_inf"]
    if not (res["shape_ok"] and ref.dtype.kind in "fc" and out.dtype.kind in "fc"):
        return (ref, out), bad
    ref_bad = ~np.isfinite(ref)
    if not bad and not ref_bad.any():
        return (ref, out), 0
    same_inf = np.isinf(out) & (out == ref)  # a source NaN/Inf the artifact does not reproduce fails too
    bad = int((~np.isfinite(out) & ~same_inf).sum() + (ref_bad & np.isfinite(out)).sum())
    if not bad:
        res["matching_inf"] = int(same_inf.sum())
    keep = np.isfinite(out) & ~ref_bad
    return (np.where(keep, ref, 0).astype(ref.dtype), np.where(keep, out, 0).astype(out.dtype)), bad


def _whole(res: dict[str, Any], r: Any, o: Any, thresholds: dict[str, float]) -> list[str]:
    failures = []
    for metric in table().values():
        value, failure = evaluate(metric, _compute(metric, r, o), thresholds)
        if value is not None:
            res[metric.name] = value
        if failure:
            failures.append(failure)
    res["topk_agreement"] = ({k: res[k] for k in ("top1", "top5") if k in res} if "top1" in res else None)
    return failures


def _compute(metric: Metric, ref: Any, out: Any) -> Any:
    from ..records import load_ref

    return load_ref(metric.compute)(ref, out)


def slice_axis(shape: tuple[int, ...], layout: str | None = None, declared: int | None = None) -> int | None:
    """The axis an output is sliced along: the declared one; else the layout's ``C``; else, for outputs of rank
    4 and more, axis 1 (ONNX's NCHW), for rank 3 the shorter of axes 1 and 2 (a detector's [1, 4+C, N] -> 1,
    [1, N, 5+C] -> 2; a sequence [N, T, C] -> its steps when T < C). Rank 2 and below: the rows are compared
    whole (a classifier's rows by top-k). None when the axis has fewer than 2 slices or more than MAX_SLICES."""
    ndim = len(shape)
    if declared is not None:
        axis = declared + ndim if declared < 0 else declared
        if not 0 <= axis < ndim:
            raise BadInput(f"slice axis {declared} is out of range for an output of rank {ndim}", stage="verify")
    elif layout and "C" in layout and len(layout) == ndim:
        axis = layout.index("C")
    elif ndim >= 4:
        axis = 1
    elif ndim == 3:
        axis = 1 if shape[1] <= shape[2] else 2
    else:
        return None
    return axis if 2 <= shape[axis] <= MAX_SLICES else None


def compare_slices(ref: Any, out: Any, axis: int, thresholds: dict[str, float]) -> dict[str, Any]:
    """The ``per_slice`` metrics of every slice along ``axis`` that is not flat: the worst slice per metric
    (``worst_by``), the slice that decides (``worst``: the worst of the first failing metric, else of the first
    metric) with its metrics, how many slices fail each gate, and the failures."""
    import numpy as np

    rs = np.moveaxis(ref, axis, 0).reshape(ref.shape[axis], -1)
    os_ = np.moveaxis(out, axis, 0).reshape(out.shape[axis], -1)
    span = rs.max(axis=1).astype(np.float64) - rs.min(axis=1) if rs.size else np.zeros(len(rs))
    whole = float(ref.max()) - float(ref.min()) if ref.size else 0.0
    judged = np.flatnonzero(span > SLICE_FLOOR * whole) if whole > 0 else np.arange(0)
    info: dict[str, Any] = {"axis": axis, "count": int(len(rs)), "judged": int(len(judged)),
                            "flat": int(len(rs) - len(judged)), "worst_by": {}, "failing": {}}
    failures: list[str] = []
    per_slice = [m for m in table().values() if m.per_slice]
    values: dict[str, dict[int, float]] = {}
    for metric in per_slice:
        vals: dict[int, float] = {}
        for i in judged.tolist():
            value, _ = evaluate(metric, _compute(metric, rs[i], os_[i]), {})
            if value is not None:
                vals[i] = value
        if not vals:
            continue
        values[metric.name] = vals
        pick = min if metric.better == "higher" else max
        worst = pick(vals, key=lambda i: vals[i])
        info["worst_by"][metric.name] = {"index": worst, "value": vals[worst]}
        limit = thresholds.get(metric.name)
        if limit is None:
            continue
        bad = [i for i, v in vals.items() if not metric.passes(v, limit)]
        if bad:
            info["failing"][metric.name] = len(bad)
            _, text = evaluate(metric, _compute(metric, rs[worst], os_[worst]), thresholds)
            failures.append(f"slice {worst} of {len(rs)} along axis {axis}: {text}"
                            + (f" ({len(bad)} slices fail)" if len(bad) > 1 else ""))
    decider = next((m.name for m in per_slice if m.name in info["failing"]),
                   next((m.name for m in per_slice if m.name in info["worst_by"]), None))
    if decider is not None:
        index = info["worst_by"][decider]["index"]
        info["worst"] = {"index": index, "by": decider,
                         "metrics": {m: v[index] for m, v in values.items() if index in v}}
    info["pass"] = not failures
    info["failures"] = failures
    return info


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a classifier output [N, classes] (or [N, ..., classes])."""
    pred = logits.reshape(len(labels), -1, logits.shape[-1])[:, 0, :].argmax(-1) if logits.ndim > 2 else logits.argmax(-1)
    return float((pred == labels.reshape(-1)).mean())
