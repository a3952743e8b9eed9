"""Real pretrained models through edgeconv: every ready target at fp32, fp16 and int8, with task checks.

    python scripts/real_models.py                     # the full run -> docs/real-models.md + docs/real-models.json
    python scripts/real_models.py --models cls,det --precisions fp32 --out /tmp/rm.md

The models come from the pinned corpus (edgeconv.testing.corpus: rapidocr-onnxruntime 1.4.4 det/rec/cls,
ddddocr 1.6.1 common_det/common/common_old). Calibration and verification inputs are rendered with Pillow
(DejaVu fonts) and saved as .npz in the corpus cache (``<cache>/rendered``), never in the repository. Each
conversion goes through ``edgeconv.pipeline.convert`` (verified with the fidelity contract on the rendered
inputs); the task checks run the artifacts through ``edgeconv.pipeline.load_artifact`` and the target's runner
(``edgeconv.testing.ocr``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Spec:
    key: str
    source: str  # corpus source name
    member: str
    input_name: str
    shape: tuple[int, ...]  # the pinned input shape every target gets
    note: str
    # top-1 agreement is a classifier's metric: off for outputs whose last axis is not a set of classes
    thresholds: dict[str, float] | None = None


def specs() -> dict[str, Spec]:
    from edgeconv.testing import ocr

    return {s.key: s for s in (
        Spec("det", ocr.RAPIDOCR, ocr.DET, "x", (1, 3, *ocr.DET_SHAPE), "PP-OCRv4 text detector (DB), probability map",
             {"top1": 0.0}),
        Spec("cls", ocr.RAPIDOCR, ocr.CLS, "x", (1, 3, *ocr.CLS_SHAPE), "PP-OCR mobile v2 0/180 degree classifier"),
        Spec("rec", ocr.RAPIDOCR, ocr.REC, "x", (1, 3, *ocr.REC_SHAPE), "PP-OCRv4 recogniser (CTC over 6625 classes)"),
        Spec("common_det", ocr.DDDDOCR, ocr.DD_DET, "images", (1, 3, ocr.DD_DET_SIZE, ocr.DD_DET_SIZE),
             "ddddocr YOLO-style detector, boxes [1,3549,6]", {"top1": 0.0}),
        Spec("common", ocr.DDDDOCR, ocr.DD_COMMON, "input1", (1, 1, *ocr.DD_SHAPE),
             "ddddocr 'beta' recogniser: CNN + LSTM, CTC over 8210 classes"),
        Spec("common_old", ocr.DDDDOCR, ocr.DD_OLD, "input1", (1, 1, *ocr.DD_SHAPE),
             "ddddocr old recogniser, already quantized with com.microsoft ops"),
    )}


# -- rendered data ------------------------------------------------------------------------------
def rendered_dir() -> Path:
    from edgeconv.testing.corpus import cache_dir

    d = cache_dir() / "rendered"
    d.mkdir(parents=True, exist_ok=True)
    return d


def make_inputs(key: str, n: int, seed: int) -> np.ndarray:
    """``n`` realistic inputs for model ``key`` (seeded), already pre-processed as its pipeline does."""
    from edgeconv.testing import ocr

    if key == "det":
        lines = ocr.random_lines(n, seed=seed)
        return np.concatenate([ocr.det_input(ocr.render_line(t, seed=seed * 1000 + i, rotate180=i % 5 == 4))
                               for i, t in enumerate(lines)])
    if key in ("cls", "rec"):
        shape = ocr.CLS_SHAPE if key == "cls" else ocr.REC_SHAPE
        lines = ocr.random_lines(n, seed=seed, words=(1, 3))
        return np.concatenate([ocr.line_input(ocr.render_crop(t, seed=seed * 1000 + i, rotate180=(key == "cls" and i % 2 == 1)),
                                              shape) for i, t in enumerate(lines)])
    if key == "common_det":
        return np.concatenate([ocr.dd_det_input(ocr.render_scene(seed=seed * 1000 + i)) for i in range(n)])
    if key in ("common", "common_old"):
        codes = ocr.random_codes(n, seed=seed)
        return np.concatenate([ocr.dd_input(ocr.render_code(c, seed=seed * 1000 + i)) for i, c in enumerate(codes)])
    raise KeyError(key)


def dataset(spec: Spec, kind: str, n: int) -> Path:
    """The .npz of ``kind`` (calib / verify) for a model, rendered once into the cache."""
    seed = {"calib": 11, "verify": 23}[kind]
    f = rendered_dir() / f"{spec.key}-{kind}-{n}-s{seed}-{'x'.join(map(str, spec.shape))}.npz"
    if not f.is_file():
        arr = make_inputs(spec.key, n, seed)
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, **{spec.input_name: arr.astype(np.float32)})
        tmp.rename(f)
    return f


# -- one conversion -------------------------------------------------------------------------------
def convert_one(spec: Spec, target: str, precision: str, out: Path, *, n_verify: int, n_calib: int,
                runs: int) -> dict[str, Any]:
    from edgeconv.errors import EdgeconvError, UnsupportedOperators
    from edgeconv import convert
    from edgeconv.testing.corpus import path

    src = path(spec.source, spec.member)
    row: dict[str, Any] = {"model": spec.key, "target": target, "precision": precision,
                           "source_bytes": src.stat().st_size}
    started = time.perf_counter()
    try:
        res = convert(src, target, precision=precision, input_shapes={spec.input_name: spec.shape},
                      calibration=str(dataset(spec, "calib", n_calib)) if precision.startswith("int8") else None,
                      data=str(dataset(spec, "verify", n_verify)), output=out, force=True, runs=runs, warmup=2,
                      memory=False, thresholds=spec.thresholds)
    except UnsupportedOperators as exc:
        row.update(status="refused", reason=str(exc.cause if hasattr(exc, "cause") else exc), exit_code=exc.exit_code)
    except EdgeconvError as exc:
        row.update(status="failed", reason=f"[{exc.stage}] {exc.cause if hasattr(exc, 'cause') else exc}",
                   exit_code=exc.exit_code)
    except Exception as exc:  # a crash: a bug in edgeconv, reported as such
        row.update(status="crash", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                   traceback=traceback.format_exc()[-2000:])
    else:
        rep = res.report
        row.update(
            status="converted",
            artifact=str(res.artifact),
            artifact_bytes=rep["artifact"]["size_bytes"],
            size_ratio=round(rep["artifact"]["size_bytes"] / row["source_bytes"], 3),
            verdict=rep["verdict"]["status"],
            verdict_reason=rep["verdict"].get("reason"),
            fidelity=[{k: f.get(k) for k in ("name", "cosine", "max_abs", "sqnr_db", "topk_agreement", "pass")}
                      for f in rep.get("fidelity") or []],
            samples=(rep.get("data") or {}).get("samples"),
            latency_ms_p50=(rep.get("latency_ms") or {}).get("p50"),
            timings={k: round(v, 2) for k, v in rep["timings"].items()},
            warnings=rep.get("warnings", [])[:6],
        )
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# -- task checks ------------------------------------------------------------------------------
def ocr_check(arts: dict[str, str], n_lines: int) -> dict[str, Any]:
    """The OCR pipeline on ``n_lines`` rendered lines: with the source models, then with the artifacts."""
    from edgeconv.testing import ocr
    from edgeconv.testing.corpus import path

    lines = ocr.random_lines(n_lines, seed=101)
    images = [ocr.render_line(t, seed=5000 + i, rotate180=i % 5 == 4) for i, t in enumerate(lines)]
    charset = ocr.rapidocr_charset(path(ocr.RAPIDOCR, ocr.REC))
    shapes = {"det": (1, 3, *ocr.DET_SHAPE), "cls": (1, 3, *ocr.CLS_SHAPE), "rec": (1, 3, *ocr.REC_SHAPE)}
    members = {"det": ocr.DET, "cls": ocr.CLS, "rec": ocr.REC}

    def read(models: dict[str, Any]) -> list[str]:
        runners = {k: ocr.ModelRunner(v, {"x": shapes[k]}) for k, v in models.items()}
        try:
            pipe = ocr.OCR(runners["det"], runners["rec"], charset, runners["cls"])
            return [pipe(img).text for img in images]
        finally:
            for r in runners.values():
                r.close()

    src = read({k: path(ocr.RAPIDOCR, m) for k, m in members.items()})
    out = {"lines": n_lines, "truth_sample": lines[:3],
           "source": {"exact": sum(a == b for a, b in zip(src, lines, strict=True)), "cer_truth": round(ocr.cer(src, lines), 4)}}
    if arts:
        got = read({k: arts.get(k) or path(ocr.RAPIDOCR, members[k]) for k in members})
        out["artifact"] = {
            "models": sorted(arts),
            "same_as_source": sum(a == b for a, b in zip(got, src, strict=True)),
            "exact": sum(a == b for a, b in zip(got, lines, strict=True)),
            "cer_source": round(ocr.cer(got, src), 4),
            "cer_truth": round(ocr.cer(got, lines), 4),
            "differences": [{"truth": t, "source": s, "artifact": g} for t, s, g in zip(lines, src, got, strict=True) if g != s][:5],
        }
    return out


def dd_check(art: str | None, n: int) -> dict[str, Any]:
    from edgeconv.testing import ocr
    from edgeconv.testing.corpus import fetch, path

    codes = ocr.random_codes(n, seed=202)
    images = [ocr.render_code(c, seed=7000 + i) for i, c in enumerate(codes)]
    charset = ocr.ddddocr_charset(fetch(ocr.DDDDOCR) / "ddddocr" / "charsets.py")

    def read(model: Any) -> list[str]:
        with ocr.ModelRunner(model, {"input1": (1, 1, *ocr.DD_SHAPE)}) as r:
            return [ocr.dd_read(r, img, charset) for img in images]

    src = read(path(ocr.DDDDOCR, ocr.DD_COMMON))
    out = {"codes": n, "source": {"exact": sum(a == b for a, b in zip(src, codes, strict=True)), "cer_truth": round(ocr.cer(src, codes), 4)}}
    if art:
        got = read(art)
        out["artifact"] = {"same_as_source": sum(a == b for a, b in zip(got, src, strict=True)), "exact": sum(a == b for a, b in zip(got, codes, strict=True)),
                           "cer_source": round(ocr.cer(got, src), 4), "cer_truth": round(ocr.cer(got, codes), 4)}
    return out


# -- the document -------------------------------------------------------------------------------
def _fid(row: dict[str, Any]) -> str:
    f = row.get("fidelity") or []
    return "; ".join(f"cos {x['cosine']:.6f}, max {x['max_abs']:.3g}" if x.get("cosine") is not None else "n/a" for x in f)


def _verdict(row: dict[str, Any]) -> str:
    if row["status"] != "converted":
        return f"**{row['status']}**: {row['reason'][:160]}"
    v = row["verdict"]
    return v if v == "pass" else f"**{v}**: {(row.get('verdict_reason') or '')[:120]}"


def write_doc(result: dict[str, Any], md: Path) -> None:
    rows = result["rows"]
    out = [
        "# Real models",
        "",
        "Real pretrained models from PyPI wheels (pinned in `edgeconv.testing.corpus`), converted through edgeconv to "
        "every target that runs on this machine, verified with the fidelity contract on rendered inputs "
        "(Pillow, DejaVu fonts), and checked on their task: the text an OCR pipeline reads with the converted "
        "models. Regenerate with:",
        "",
        "```",
        "python scripts/real_models.py" + re.sub(r" --work \S+", "", result["args_note"]),
        "```",
        "",
        f"Generated {result['created']} on {result['host']} in {result['wall_seconds'] / 60:.1f} min "
        f"(edgeconv {result['versions'].get('edgeconv')}; {', '.join(f'{k} {v}' for k, v in result['versions'].items() if k != 'edgeconv')}). "
        "Timings are reported, never asserted; the machine is shared (2 cores, other runs beside this one).",
        *(["", result["note"]] if result.get("note") else []),
        "",
        "## Inputs",
        "",
        "| model | file | pinned input | what |",
        "|---|---|---|---|",
    ]
    for s in result["specs"]:
        out.append(f"| {s['key']} | `{s['member']}` | `{s['input_name']}` {list(s['shape'])} | {s['note']} |")
    out += [
        "",
        f"Verification: {result['n_verify']} rendered samples per model (`--data`), calibration: {result['n_calib']} "
        "others (`--calib`, int8). det: one text line on a 96x640 canvas (every 5th upside down); cls/rec: tight "
        "line crops, pre-processed as rapidocr does; common_det: 416x416 scenes with scattered characters; "
        "common/common_old: grey 64x192 images of 4-6 characters. The det and common_det outputs are not class "
        "scores: their verification uses `thresholds={'top1': 0}` (see Findings).",
        "",
        "## Conversions",
        "",
        "| model | target | precision | result | conversion s | size vs source | fidelity (per output) |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        conv = r.get("timings", {})
        secs = sum(v for k, v in conv.items() if k not in ("verify",)) if conv else r["seconds"]
        size = f"{r['size_ratio']:.2f}x" if r.get("size_ratio") is not None else ""
        out.append(f"| {r['model']} | {r['target']} | {r['precision']} | {_verdict(r)} | {secs:.1f} | {size} | {_fid(r)} |")
    out += ["", "## Task checks", ""]
    o = result.get("ocr", {})
    if o:
        src = o["source"]
        out += [
            f"**OCR** (det -> crop -> cls -> rec, `edgeconv.testing.ocr`) on {o['lines']} rendered lines "
            f"(e.g. {', '.join(repr(t) for t in o['truth_sample'])}). The source models read {src['exact']}/{o['lines']} "
            f"lines exactly (CER vs truth {src['cer_truth']:.2%}). With the converted det, cls and rec of each "
            "target and precision:",
            "",
            "| target | precision | same text as source | exact | CER vs source | CER vs truth | acceptance (>= 95 % same) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for key, a in o["artifacts"].items():
            t, p = key.split("/")
            if "error" in a:
                out.append(f"| {t} | {p} | n/a | | | | {a['error'][:120]} |")
                continue
            same = a["same_as_source"]
            ok = "pass" if same >= 0.95 * o["lines"] else "**fail**"
            note = "" if set(a["models"]) == {"det", "cls", "rec"} else f" (converted: {', '.join(a['models'])}; others: source)"
            out.append(f"| {t} | {p} | {same}/{o['lines']} | {a['exact']}/{o['lines']} | {a['cer_source']:.2%} | "
                       f"{a['cer_truth']:.2%} | {ok}{note} |")
    d = result.get("ddddocr", {})
    if d:
        src = d["source"]
        out += [
            "",
            f"**ddddocr common.onnx** on {d['codes']} rendered 4-6 character strings (64 px high, grey): the source reads "
            f"{src['exact']}/{d['codes']} exactly (CER vs truth {src['cer_truth']:.2%}).",
            "",
            "| target | precision | same text as source | exact | CER vs source | CER vs truth |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for key, a in d["artifacts"].items():
            t, p = key.split("/")
            if "error" in a:
                out.append(f"| {t} | {p} | n/a | | | {a['error'][:120]} |")
                continue
            out.append(f"| {t} | {p} | {a['same_as_source']}/{d['codes']} | {a['exact']}/{d['codes']} | "
                       f"{a['cer_source']:.2%} | {a['cer_truth']:.2%} |")
    acc = result.get("acceptance", {})
    if acc:
        out += ["", "## Acceptance (issue #9)", ""]
        for k, v in acc.items():
            out.append(f"- {k}: **{'pass' if v['pass'] else 'FAIL'}** ({v['detail']})")
    failing = [r for r in rows if r.get("verdict") != "pass"]
    if failing:
        out += ["", "## Not passing in this run", "",
                "Each one is caught: a failed verification (exit code 1), a refusal by the pre-check, or a clean "
                "conversion error; none is a silent wrong answer.", ""]
        for r in failing:
            why = r.get("verdict_reason") if r["status"] == "converted" else r.get("reason")
            out.append(f"- {r['model']} -> {r['target']} {r['precision']}: {r['status']}"
                       f"{' (verification failed)' if r['status'] == 'converted' else ''}: {' '.join(str(why).split())[:300]}")
    out += ["", *REC_INT8.strip().splitlines()]
    out += ["", "## Findings", ""] + [f"- {f}" for f in FINDINGS] + [""]
    md.write_text("\n".join(out))


# Measured by hand, not by this script: the INT8 recipes tried on rec for issue #17 (kept here so that a
# regenerated page keeps them).
REC_INT8 = """
## INT8 of the OCR recogniser (issue #17): no recipe passes

rec (PP-OCRv4) fails INT8 on every target, and no recipe tried makes it pass. The calibration method, the
activation type and float layers were all tried, up to all 38 Convs, or all 352 nodes that are not Conv,
MatMul or Gemm. `--precision auto`'s layer fallback cannot find a float set, and reports FAIL (exit 1). Measured 2026-12-04 with 32 calibration crops
(`rec-calib-32-s11`), 8 verification crops (`rec-verify-8-s23`) and `--task ctc`. The int8 gates: 8 of 8 strings
equal (>= 0.95), cosine >= 0.98 whole and per time step, range error <= 0.25 per step. Run through
`edgeconv.convert(..., precision="int8", options=...)` on onnxruntime 1.32.0 unless marked. The machine has
2 cores, AMD EPYC with avx512_bf16 and no AMX, shared with other runs; a conversion took 10-46 s, entropy and
percentile calibration 155 s.

| target / recipe | layers kept float | strings equal | characters agree | cosine | SQNR dB | verdict |
|---|---|---|---|---|---|---|
| onnxruntime, default (per-channel weights, minmax, uint8 activations) | 0 | 0.125 | 0.827 | 0.9703 | 12.3 | fail |
| onnxruntime `per_channel=false` | 0 | 0.000 | 0.007 | 0.8187 | 4.8 | fail |
| onnxruntime `calibrate_method=entropy` | 0 | 0.125 | 0.827 | 0.9703 | 12.3 | fail |
| onnxruntime `calibrate_method=percentile` | 0 | 0.250 | 0.852 | 0.9519 | 9.9 | fail |
| onnxruntime `activation_type=int8` | 0 | 0.125 | 0.842 | 0.9697 | 12.2 | fail |
| onnxruntime, 128 calibration crops (direct onnxruntime) | 0 | 0.125 | 0.826 | 0.957 | 10.8 | fail |
| onnxruntime `keep_float`: fake-quant ranking top 16 / top 30 | 16 / 30 | 0.000 / 0.000 | 0.793 / 0.816 | 0.961 / 0.960 | 11.2 / 11.1 | fail |
| onnxruntime `keep_float`: LayerNorm, Softmax, MatMul/Gemm nodes | 41 | 0.125 | 0.832 | 0.9695 | 12.2 | fail |
| onnxruntime `keep_float`: the whole SVTR neck and CTC head | 131 | 0.125 | 0.832 | 0.9691 | 12.1 | fail |
| onnxruntime `keep_float`: all 38 Convs (+ top 30) | 38 (63) | 0.000 (0.000) | 0.841 (0.793) | 0.956 (0.945) | 9.4 (9.1) | fail |
| onnxruntime `op_types=Conv,MatMul,Gemm` | 352 | 0.000 | 0.810 | 0.9597 | 10.9 | fail |
| onnxruntime `op_types=MatMul,Gemm` (6 % of the MACs at int8) | 390 (all but 13) | 0.875 | 0.990 | 0.9998 | 34.7 | fail |
| OpenVINO int8 (NNCF defaults) | 0 | 0.625 | 0.902 | 0.9763 | 12.5 | fail |
| TFLite int8 | 0 | 0.375 | 0.870 | 0.9766 | 13.3 | fail |

Why (measured with onnxruntime's quantizer called directly on the same model and data):
- The error comes from everywhere. A single Conv quantized alone costs 10-50 dB SQNR; `p2o.Conv.1`, `p2o.Conv.2`
  and `p2o.Conv.7` alone bring the cosine to 0.95-0.97. Quantizing only the Muls, only the Adds, only the
  decomposed LayerNorms, or only the hardswish Div/Clip each fails on its own.
- The int8 weights alone break it, with every activation in float: cosine 0.956, 4 of 8 strings. The first
  depthwise Conv is a high-pass filter over a near-constant background, so rounding its kernel shifts its output's
  mean. Bias correction (the bias absorbs the mean shift, as NNCF does; onnxruntime's quantizer does not) lifts
  weight-only int8 to cosine 0.9996. Added layer by layer to a full int8 build, it lifts the default to cosine 0.991
  (4 of 8 strings). With the 16 most sensitive Convs also float and only Conv/MatMul/Gemm quantized (55 % of the
  MACs at int8), all 8 strings are equal and the cosine is 0.998. That recipe still fails the per-step gates:
  the worst step's cosine is 0.89, and its range error is 0.94. On 64 crops it keeps 84 % of the strings equal.
  Bias correction is not in edgeconv.
- Many of the differences that remain are spaces. The source itself emits leading and trailing spaces on the blank
  part of the 640-px crop, with a confidence of 0.5-0.75. On 64 crops the source matches its label in 27 % of
  cases exactly and in 81 % once spaces are stripped. Strict equality with the source is the contract, so these
  count as failures.
"""

FINDINGS = [
    "cls declares its input `[-1,3,?,?]`: `-1` (paddle2onnx's \"dynamic\") was refused as a negative dimension, and "
    "the two `?` axes shared one name, which tells shape inference H == W. Fixed in the ONNX importer: each such "
    "axis becomes a dynamic axis of its own (`in0_dim2`); regression tests in `tests/test_import_regressions.py`.",
    "ddddocr common.onnx declares its output `[1,seqlen]`, the graph gives `[T,1,8210]`; onnxslim trusts the "
    "declaration and rewrote the final Reshape to `[1,-1]`, so the simplified model produced `[1,T*8210]` (caught "
    "by verification as a shape mismatch on common_old). Fixed in the importer: declared output shapes are checked "
    "against shape inference without them (ONNX, then onnxruntime's symbolic inference); a contradicted one is "
    "replaced, one no inference can confirm (common_old's com.microsoft ops) is not passed on to the tools.",
    "det's probability map [1,1,H,W] and common_det's boxes [1,3549,6] are not class scores, yet the fidelity "
    "contract gated them on top-1 agreement along the last axis (0.43-0.91 on equal-up-to-rounding maps at fp32). "
    "Diff proposed for verify/metrics.py (tie-aware top-1; top-1 gates only [N,classes] outputs and softmax rows).",
    "tflite: paddle2onnx node names such as `Softmax@0` are not valid TF name scopes: onnx2tf failed on cls with an "
    "unhelpful 'TF ops: Tensor' message. Diff proposed for the tflite plugin's export.py (scope-safe node names).",
    "tflite: onnx2tf keeps some variables (the depthwise kernels of the PP-OCR models) outside the Keras model, so "
    "the worker's module did not track them; TFLiteConverter's SavedModel step then failed silently and the .tflite "
    "had no signature ('no signature output ... (it has: Identity)' on cls and rec). Diff proposed for the tflite "
    "worker (track the concrete function's captured variables).",
    "int8 on onnxruntime: the PP-OCR det/cls/rec models are opset 12/11; the quantizer writes per-channel "
    "DequantizeLinear nodes with `axis` (opset 13) without raising the opset, and the result failed the ONNX "
    "checker. Diff proposed for onnx_passes.py (upgrade to opset 13 first, with a warning); regression test "
    "`test_constant_node_weights_quantize_per_channel[11]`.",
    "common_old uses com.microsoft ops (DynamicQuantizeLSTM, ...): the tflite pre-check refuses it cleanly, "
    "naming the node; onnxruntime and OpenVINO run those ops.",
    "Weights in Constant nodes (det: 342 Constant nodes, no initializers) convert on every target, int8 included "
    "(regression test `test_constant_node_weights_quantize_per_channel`).",
    "common_old (already quantized) through the onnxruntime target: fp16 makes an invalid graph (a float16 input "
    "into com.microsoft DynamicQuantizeLinear), reported only when verification loads it; int8 fails inside "
    "onnxruntime's quantizer with a bare KeyError. Both are caught, but the messages do not say why: an already "
    "quantized model should be refused up front (left to the onnx_passes owner).",
    "common (LSTM) to tflite int8: the onnx2tf worker dies with SIGSEGV (exit -11); edgeconv reports a clean "
    "toolchain failure, with no more detail than \"no output\".",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="det,cls,rec,common_det,common,common_old")
    ap.add_argument("--targets", default="onnxruntime,openvino,tflite")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--lines", type=int, default=30, help="OCR lines and ddddocr strings for the task checks")
    ap.add_argument("--verify-samples", type=int, default=8)
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--runs", type=int, default=10, help="latency runs per conversion (reported only)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "real-models.md")
    ap.add_argument("--json", type=Path, default=None, help="default: --out with .json")
    ap.add_argument("--work", type=Path, default=None, help="where the artifacts go (default: a temporary folder)")
    ap.add_argument("--note", default="", help="a line for the document's header (e.g. which patches were applied)")
    ap.add_argument("--render-only", action="store_true", help="write the document again from the JSON, run nothing")
    ap.add_argument("--resume", action="store_true",
                    help="keep the conversions the JSON already holds (their artifacts must still be in --work)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.render_only:
        write_doc(json.loads((args.json or args.out.with_suffix(".json")).read_text()), args.out)
        return 0

    import edgeconv
    from edgeconv.reporting import versions

    all_specs = specs()
    models = [all_specs[m] for m in args.models.split(",")]
    targets, precisions = args.targets.split(","), args.precisions.split(",")
    work_ctx = tempfile.TemporaryDirectory(prefix="edgeconv-real-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    rows = []
    arts: dict[tuple[str, str, str], str] = {}
    json_path = args.json or args.out.with_suffix(".json")
    done: dict[tuple[str, str, str], dict[str, Any]] = {}
    if args.resume and json_path.is_file():
        for r in json.loads(json_path.read_text()).get("rows", []):
            if r["status"] != "converted" or Path(r["artifact"]).is_dir():
                done[(r["model"], r["target"], r["precision"])] = r
    try:
        for spec in models:
            for target in targets:
                for precision in precisions:
                    print(f"{spec.key} -> {target} {precision} ...", end=" ", flush=True)
                    row = done.get((spec.key, target, precision)) or convert_one(
                        spec, target, precision, work / f"{spec.key}-{target}-{precision}",
                        n_verify=args.verify_samples, n_calib=args.calib_samples, runs=args.runs)
                    rows.append(row)
                    json_path.parent.mkdir(parents=True, exist_ok=True)
                    json_path.write_text(json.dumps({"schema": "edgeconv.real-models/1", "partial": True, "rows": rows},
                                                    indent=1, default=str))
                    if row["status"] == "converted":
                        arts[(spec.key, target, precision)] = row["artifact"]
                    print(row["status"], row.get("verdict", row.get("reason", ""))[:100], f"{row['seconds']}s", flush=True)
        result: dict[str, Any] = {"schema": "edgeconv.real-models/1", "rows": rows}
        keys = {s.key for s in models}
        if keys & {"det", "cls", "rec"}:
            print("OCR task check ...", flush=True)
            o = ocr_check({}, args.lines)
            o["artifacts"] = {}
            for target in targets:
                for precision in precisions:
                    chosen = {k: arts[(k, target, precision)] for k in ("det", "cls", "rec") if (k, target, precision) in arts}
                    if not chosen:
                        continue
                    try:
                        a = ocr_check(chosen, args.lines)["artifact"]
                    except Exception as exc:
                        a = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
                    o["artifacts"][f"{target}/{precision}"] = a
                    print(f"  {target}/{precision}: {a.get('same_as_source', a.get('error'))}", flush=True)
            result["ocr"] = o
        if "common" in keys:
            print("ddddocr task check ...", flush=True)
            d = dd_check(None, args.lines)
            d["artifacts"] = {}
            for target in targets:
                for precision in precisions:
                    if ("common", target, precision) in arts:
                        try:
                            d["artifacts"][f"{target}/{precision}"] = dd_check(arts[("common", target, precision)], args.lines)["artifact"]
                        except Exception as exc:
                            d["artifacts"][f"{target}/{precision}"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            result["ddddocr"] = d
    finally:
        if work_ctx:
            work_ctx.cleanup()
    acc = {}
    for key in ("cls", "det"):
        fp32 = [r for r in rows if r["model"] == key and r["precision"] == "fp32"]
        if fp32:
            cos = {r["target"]: min((f["cosine"] or 0) for f in r["fidelity"]) if r.get("fidelity") else None for r in fp32}
            acc[f"{key} at fp32, cosine >= 0.999 on every target"] = {
                "pass": all(c is not None and c >= 0.999 for c in cos.values()),
                "detail": ", ".join(f"{t}: {'n/a' if c is None else f'{c:.6f}'}" for t, c in cos.items())}
    if "ocr" in result:
        fp32 = {k: v for k, v in result["ocr"]["artifacts"].items() if k.endswith("/fp32")}
        n = result["ocr"]["lines"]
        acc[f"OCR at fp32: same text as the source on >= 95 % of {n} lines"] = {
            "pass": bool(fp32) and all(v.get("same_as_source", 0) >= 0.95 * n for v in fp32.values())
            and len(fp32) == len(targets),
            "detail": ", ".join(f"{k.split('/')[0]}: {v.get('same_as_source', 'n/a')}/{n}" for k, v in fp32.items())}
    result.update(
        acceptance=acc,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        host=f"{platform.machine()} {platform.system()}, {__import__('os').cpu_count()} cores",
        versions=versions(),
        wall_seconds=round(time.perf_counter() - started, 1),
        specs=[{"key": s.key, "member": s.member, "input_name": s.input_name, "shape": list(s.shape), "note": s.note}
               for s in models],
        note=args.note,
        n_verify=args.verify_samples,
        n_calib=args.calib_samples,
        args_note=" ".join(["", *(a for a in (argv if argv is not None else sys.argv[1:]))]).split(" --note")[0]
        .replace(" --resume", ""),
        edgeconv=edgeconv.__version__,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, default=str))
    write_doc(result, args.out)
    print(f"wrote {args.out} and {json_path} in {result['wall_seconds'] / 60:.1f} min")
    return 0 if all(v["pass"] for v in acc.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
