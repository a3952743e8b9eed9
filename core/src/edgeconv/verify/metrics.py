"""Comparison metrics of the fidelity contract, and their default thresholds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Default thresholds per precision (docs/fidelity.md). An output passes when its shape
# and dtype match, it holds no NaN/Inf, and every metric meets its threshold.
THRESHOLDS: dict[str, dict[str, float]] = {
    # int_equal: the share of an integer or boolean output's values (indices, counts, masks, quantized
    # values) that must equal the source's: all at fp32, where the float metrics let an off-by-one in one
    # value of a few pass (OpenVINO's DynamicQuantizeLinear rounding: found by the operator coverage).
    # max_rel_err: the largest absolute error as a share of the source output's largest magnitude. At fp32
    # cosine and SQNR let a few values off by 1% pass (OpenVINO's cubic Resize with exclude_outside: 0.1 on
    # values up to 16, cosine 0.99995); two fp32 runtimes agree to ~1e-5 of the range.
    "fp32": {"cosine": 0.9999, "sqnr_db": 40.0, "top1": 0.99, "int_equal": 1.0, "max_rel_err": 1e-3},
    "fp16": {"cosine": 0.999, "sqnr_db": 30.0, "top1": 0.98},
    "bf16": {"cosine": 0.995, "sqnr_db": 20.0, "top1": 0.95},
    "int8": {"cosine": 0.98, "sqnr_db": 12.0, "top1": 0.80},
    "int8-dynamic": {"cosine": 0.98, "sqnr_db": 12.0, "top1": 0.80},
}


def thresholds_for(precision: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    base = dict(THRESHOLDS.get(precision, THRESHOLDS["int8"]))
    base.update(overrides or {})
    return base


def compare(name: str, ref: np.ndarray, out: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Compare one output of the artifact (``out``) with the source's (``ref``)."""
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
        # strings (StringConcat, RegexFullMatch, a tokenizer's output): equal or not, no float metrics
        differ = None
        if res["shape_ok"]:
            differ = sum(a != b for a, b in zip(np.asarray(ref).ravel().tolist(), np.asarray(out).ravel().tolist(), strict=False))
            res["values_differ"] = int(differ)
        if differ:
            failures.append(f"{differ} of {ref.size} string values differ")
        res["topk_agreement"] = None
        res["pass"] = not failures
        res["failures"] = failures
        return res
    # NaN always fails. An infinity fails unless the source gives the same infinity at the same place
    # (attention scores masked with -inf, log(0)): there the artifact is exact, and the metrics below
    # compare the finite values. Found by the operator coverage (Attention's qk_matmul_output).
    finite = None
    bad = res["nan_or_inf"]
    if res["shape_ok"] and ref.dtype.kind in "fc" and out.dtype.kind in "fc":
        ref_bad = ~np.isfinite(ref)
        if bad or ref_bad.any():  # a source NaN/Inf the artifact does not reproduce fails too
            same_inf = np.isinf(out) & (out == ref)
            bad = int((~np.isfinite(out) & ~same_inf).sum() + (ref_bad & np.isfinite(out)).sum())
            finite = np.isfinite(out) & ~ref_bad
            if not bad:
                res["matching_inf"] = int(same_inf.sum())
    if bad:
        failures.append(f"{bad} NaN/Inf values" if bad == res["nan_or_inf"] else
                        f"{bad} NaN/Inf values where the source differs")
    if res["shape_ok"] and not bad:
        r = ref.astype(np.float64)
        o = out.astype(np.float64)
        r, o = (r[finite], o[finite]) if finite is not None else (r.ravel(), o.ravel())
        diff = o - r
        res["max_abs"] = float(np.abs(diff).max()) if diff.size else 0.0
        res["mean_abs"] = float(np.abs(diff).mean()) if diff.size else 0.0
        nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
        if nr == 0 and no == 0:
            res["cosine"] = 1.0
        else:
            res["cosine"] = float(r @ o / (nr * no)) if nr and no else 0.0
        noise = float(diff @ diff)
        signal = float(r @ r)
        res["sqnr_db"] = 200.0 if noise == 0 else (float(10 * np.log10(signal / noise)) if signal else -200.0)
        res["sqnr_db"] = min(res["sqnr_db"], 200.0)
        if ref.ndim >= 2 and ref.shape[-1] >= 2 and ref.dtype.kind == "f" and ref.size:  # empty: no rows to rank
            rr = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
            oo = out.reshape(-1, out.shape[-1])
            top_ref = rr.argmax(-1)
            # Ties: a row whose maxima are equal up to float32 rounding (a saturated sigmoid map, a zero
            # row) has no single top-1; the artifact's pick agrees when the reference ranks it first.
            tie = 1e-6 * max(float(np.abs(np.where(np.isfinite(rr), rr, 0.0)).max()), 1e-30)
            pick = oo.argmax(-1)
            rows = np.arange(len(rr))
            agree = rr[rows, pick] >= rr[rows, top_ref] - tie
            # Top-k is a classifier's metric: it gates the verdict for [N, classes] outputs and for rows
            # that are probability distributions (softmax: a CTC sequence [N, T, classes]); on other outputs
            # (a detector's probability map [N,1,H,W], boxes [N,anchors,xywh+scores]) the last axis is not
            # a set of classes, and the number is reported only.
            dist = bool((rr >= -1e-6).all() and np.allclose(rr.sum(-1), 1.0, atol=1e-3))
            res["topk_agreement"] = {"top1": float(agree.mean()), "gates": ref.ndim == 2 or dist}
            if ref.shape[-1] >= 5:
                top5 = np.argsort(-oo, axis=-1)[:, :5]
                res["topk_agreement"]["top5"] = float((top5 == top_ref[:, None]).any(-1).mean())
        else:
            res["topk_agreement"] = None
        if res["cosine"] < thresholds["cosine"]:
            failures.append(f"cosine {res['cosine']:.6f} < {thresholds['cosine']}")
        if res["sqnr_db"] < thresholds["sqnr_db"]:
            failures.append(f"SQNR {res['sqnr_db']:.1f} dB < {thresholds['sqnr_db']}")
        top = res["topk_agreement"]
        if top and top["gates"] and top["top1"] < thresholds["top1"]:
            failures.append(f"top-1 agreement {top['top1']:.3f} < {thresholds['top1']}")
        scale = float(np.abs(r).max()) if r.size else 0.0
        res["max_rel_err"] = res["max_abs"] / scale if scale else (0.0 if res["max_abs"] == 0 else float("inf"))
        if "max_rel_err" in thresholds and ref.dtype.kind in "fc" and res["max_rel_err"] > thresholds["max_rel_err"]:
            failures.append(f"max abs error {res['max_abs']:.3g} is {res['max_rel_err']:.2g} of the output's range "
                            f"> {thresholds['max_rel_err']:g}")
        if ref.dtype.kind in "iub" and "int_equal" in thresholds:
            differ = int((r != o).sum())
            res["int_equal"] = 1.0 - differ / r.size if r.size else 1.0
            if res["int_equal"] < thresholds["int_equal"]:
                failures.append(f"{differ} of {r.size} integer values differ")
    res["pass"] = not failures
    res["failures"] = failures
    return res


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a classifier output [N, classes] (or [N, ..., classes])."""
    pred = logits.reshape(len(labels), -1, logits.shape[-1])[:, 0, :].argmax(-1) if logits.ndim > 2 else logits.argmax(-1)
    return float((pred == labels.reshape(-1)).mean())
