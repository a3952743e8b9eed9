"""Comparison metrics of the fidelity contract, and their default thresholds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Default thresholds per precision (docs/fidelity.md). An output passes when its shape
# and dtype match, it holds no NaN/Inf, and every metric meets its threshold.
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"cosine": 0.9999, "sqnr_db": 40.0, "top1": 0.99},
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
    if res["nan_or_inf"]:
        failures.append(f"{res['nan_or_inf']} NaN/Inf values")
    if res["shape_ok"] and not res["nan_or_inf"]:
        r = ref.astype(np.float64).ravel()
        o = out.astype(np.float64).ravel()
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
        if ref.ndim >= 2 and ref.shape[-1] >= 2 and ref.dtype.kind == "f":
            rr = ref.reshape(-1, ref.shape[-1])
            oo = out.reshape(-1, out.shape[-1])
            top_ref = rr.argmax(-1)
            res["topk_agreement"] = {"top1": float((oo.argmax(-1) == top_ref).mean())}
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
        if top and top["top1"] < thresholds["top1"]:
            failures.append(f"top-1 agreement {top['top1']:.3f} < {thresholds['top1']}")
    res["pass"] = not failures
    res["failures"] = failures
    return res


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a classifier output [N, classes] (or [N, ..., classes])."""
    pred = logits.reshape(len(labels), -1, logits.shape[-1])[:, 0, :].argmax(-1) if logits.ndim > 2 else logits.argmax(-1)
    return float((pred == labels.reshape(-1)).mean())
