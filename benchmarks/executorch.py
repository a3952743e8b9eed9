#!/usr/bin/env python
"""ExecuTorch (.pte with XNNPACK) beside onnxruntime and TFLite/LiteRT on the same PyTorch models, in one run.

    python benchmarks/executorch.py [--quick] [--models resnet18,mobilenet_v2,digits]
                                    [--out docs/benchmarks-executorch.md] [--json benchmarks/results/executorch.json]
    python benchmarks/executorch.py --render-only benchmarks/results/executorch.json   # the markdown again

For every model (ResNet-18 and MobileNetV2 from ``edgeconv.testing.refnets.build``: random weights, input
1x3x224x224; the digits CNN: ``refnets.digits_trained()``, the shipped sample's trained weights), in this one
process:

* **conversion** of the same ``nn.Module`` with ``edgeconv.convert(module, TARGET, precision=P, verify=False)``:
  ``executorch`` fp32 / fp16 / int8 (PT2E, XNNPACKQuantizer) and fp32 with ``-O delegate=none`` (every operator
  on ExecuTorch's portable kernels), ``onnxruntime`` fp32 / int8 (torch -> ONNX, QDQ) and ``tflite`` fp32 / int8
  (torch -> ONNX -> onnx2tf). Wall time of ``convert()``, and the report's stage timings. One untimed digits
  conversion per target first, so that no row pays a framework's first import. Calibration: ResNet-18 and
  MobileNetV2 ``calib`` samples of ``numpy.random.default_rng(0).standard_normal``, verification the next ``data``
  samples; digits: ``digits_calib.npz`` / the first ``data`` samples of ``digits_test.npz``.
* **fidelity** of every artifact against eager PyTorch on the verification samples, through edgeconv's runners
  (the artifact's IO contract adapts the input: the TFLite artifacts take NHWC): cosine, max abs error, top-1
  agreement (digits: labelled accuracy).
* **latency** with ONE timing loop over all artifacts: edgeconv's runners (``infer`` on a
  feed dict, the call path of ``edgeconv bench``; the runners add microseconds, which matters on the digits CNN
  only), every runtime at its default thread count (2 on this machine: one per core) and its default delegate
  (LiteRT: XNNPACK; onnxruntime: CPU EP; ExecuTorch: the program's XNNPACK delegate). Warm-up, then interleaved
  rounds (round-robin over the variants, the first one rotating) with a per-round time budget, so that load from
  other work hits every variant alike. PyTorch eager is the fidelity reference, not timed: in a process holding
  eight runtimes' thread pools on two loaded cores its OpenMP threads fared pathologically (the digits CNN took
  hundreds of ms per call instead of 0.2-0.3 ms alone), which would say nothing about PyTorch. p10 and p50 in ms, and ratios of p50s **measured in this run**: to
  onnxruntime fp32, and ExecuTorch against onnxruntime and TFLite at the same precision.
* **sizes** and the ExecuTorch **delegation** (operators in XNNPACK vs on the portable kernels).

It writes a markdown report (date, machine, load, versions, command) and the raw numbers (JSON).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the package: run as a script, its folder is sys.path[0] and `import executorch` would
# import this file again. Drop the folder from the path before anything imports executorch.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

ROOT = _HERE.parent
MODELS = ("resnet18", "mobilenet_v2", "digits")
TITLES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "digits": "digits CNN"}
# (row name, target, precision, target options)
VARIANTS = (
    ("executorch fp32", "executorch", "fp32", {}),
    ("executorch fp16", "executorch", "fp16", {}),
    ("executorch int8", "executorch", "int8", {}),
    ("executorch fp32 portable", "executorch", "fp32", {"delegate": "none"}),
    ("onnxruntime fp32", "onnxruntime", "fp32", {}),
    ("onnxruntime int8", "onnxruntime", "int8", {}),
    ("tflite fp32", "tflite", "fp32", {}),
    ("tflite int8", "tflite", "int8", {}),
)
EAGER = "torch eager fp32"
PORTABLE_SAMPLES = 2  # fidelity samples for the fully portable program (ResNet-18: ~30 s per call there)
SLOW_ROUNDS = 3  # a variant slower than the round budget is timed once per round in the first rounds only
SETTINGS = {
    "full": {"warmup": 5, "rounds": 12, "runs": 10, "round_budget_s": 1.5, "calib": 32, "data": 16},
    "quick": {"warmup": 2, "rounds": 4, "runs": 5, "round_budget_s": 0.5, "calib": 8, "data": 4},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    cpu, flags = platform.processor(), []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                                 "amx_int8", "f16c") if f in have]
            break
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": list(os.getloadavg())}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("edgeconv", "executorch", "torchao", "torch", "onnxruntime", "ai-edge-litert", "onnx2tf",
                 "tensorflow", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


# -- models and data --------------------------------------------------------------------------------------------------
def model_and_data(name: str, work: Path, s: dict[str, Any]) -> tuple[Any, Any, Path, Path]:
    import torch

    from edgeconv.demo import sample_files
    from edgeconv.testing.refnets import build, digits_trained

    calib, data = work / f"{name}-calib.npz", work / f"{name}-data.npz"
    if name == "digits":
        files = sample_files()
        with np.load(files["test"]) as z:
            np.savez(data, input=z["input"][: s["data"] * 10], labels=z["labels"][: s["data"] * 10])
        with np.load(files["calib"]) as z:
            np.savez(calib, input=z["input"][: max(s["calib"], 32)])
        return digits_trained(), torch.zeros(1, 1, 8, 8), calib, data
    model, example = build(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((s["calib"] + s["data"], *example.shape[1:])).astype(np.float32)
    np.savez(calib, input=x[: s["calib"]])
    np.savez(data, input=x[s["calib"] :])
    return model, example, calib, data


def convert_all(name: str, model: Any, example: Any, calib: Path, data: Path, work: Path) -> dict[str, Any]:
    import edgeconv

    out: dict[str, Any] = {}
    for row, target, precision, options in VARIANTS:
        folder = work / f"{name}-{row.replace(' ', '-')}"
        log(f"{name}: convert {row}")
        t0 = time.perf_counter()
        try:
            res = edgeconv.convert(model, target, precision=precision, calibration=str(calib), output=folder,
                                   force=True, verify=False, options=dict(options),
                                   source_options={"example_inputs": example})
        except Exception as exc:  # a failing target is a row with its error, not a lost run
            out[row] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
            log(f"  failed: {out[row]['error']}")
            continue
        seconds = time.perf_counter() - t0
        rep = res.report
        out[row] = {"folder": str(folder), "seconds": round(seconds, 3), "timings": rep.get("timings"),
                    "size_bytes": rep["artifact"]["size_bytes"], "route": rep["route"],
                    "details": _details(rep["artifact"]["details"]), "warnings": rep.get("warnings", [])}
    return out


def _details(d: dict[str, Any]) -> dict[str, Any]:
    keep = ("delegation", "lower_seconds", "serialize_seconds", "pte_bytes", "precision")
    return {k: d[k] for k in keep if k in d}


def warm_up(work: Path) -> None:
    """One untimed digits conversion per target: no timed row pays a framework's first import."""
    import torch

    import edgeconv
    from edgeconv.demo import sample_files
    from edgeconv.testing.refnets import digits_trained

    for target in ("executorch", "onnxruntime", "tflite"):
        log(f"warm-up: {target}")
        edgeconv.convert(digits_trained(), target, precision="int8", calibration=str(sample_files()["calib"]),
                         output=work / f"warmup-{target}", force=True, verify=False,
                         source_options={"example_inputs": torch.zeros(1, 1, 8, 8)})


# -- fidelity and latency ---------------------------------------------------------------------------------------------
class Eager:
    def __init__(self, model: Any) -> None:
        self.model = model

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            return {"output": self.model(torch.from_numpy(feed["input"])).numpy()}


def runners(name: str, model: Any, converted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """row -> (runner, the artifact's IO contract or None for eager)."""
    from edgeconv.artifacts import open_artifact
    from edgeconv.verification.runners import make_runner

    out: dict[str, tuple[Any, Any]] = {EAGER: (Eager(model), None)}
    for row, c in converted.items():
        if "error" in c:
            continue
        art, record = open_artifact(c["folder"])
        runner = make_runner(art, **(record.get("runner_options") or {}))
        runner.activate()
        c["runtime"] = dict(runner.info)
        out[row] = (runner, art.io)
    return out


def fidelity(rs: dict[str, tuple[Any, Any]], src_io: Any, data: Path) -> dict[str, Any]:
    from edgeconv.verification.fidelity import adapt_inputs, adapt_outputs

    with np.load(data) as z:
        xs, labels = z["input"], (z["labels"] if "labels" in z.files else None)
    outs: dict[str, list[Any]] = {row: [] for row in rs}
    for i in range(len(xs)):
        feed = {"input": xs[i : i + 1]}
        for row, (runner, io) in rs.items():
            if "portable" in row and i >= PORTABLE_SAMPLES:  # reference kernels: seconds per ResNet-18 call
                continue
            got = runner.infer(feed if io is None else adapt_inputs(feed, src_io, io))
            got = got if io is None else adapt_outputs(got, src_io, io)
            outs[row].append(np.asarray(got["output"], np.float64).reshape(-1))
    res: dict[str, Any] = {}
    for row, ys in outs.items():
        y = np.stack(ys)
        ref = np.stack(outs[EAGER][: len(ys)])
        cos = float(np.mean([a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30) for a, b in zip(ref, y, strict=True)]))
        res[row] = {"cosine": cos, "max_abs": float(np.abs(ref - y).max()),
                    "top1": float(np.mean(ref.argmax(1) == y.argmax(1))), "samples": len(y)}
        if labels is not None:
            res[row]["accuracy"] = float(np.mean(y.argmax(1) == labels[: len(y)]))
    return res


def latency(rs: dict[str, tuple[Any, Any]], src_io: Any, data: Path, s: dict[str, Any]) -> dict[str, Any]:
    from edgeconv.verification.fidelity import adapt_inputs

    with np.load(data) as z:
        feed = {"input": z["input"][:1]}
    feeds = {row: (feed if io is None else adapt_inputs(feed, src_io, io)) for row, (_, io) in rs.items()}
    rows = [row for row in rs if row != EAGER]  # eager is the fidelity reference only (see the module docstring)
    slow = set()
    for row in rows:
        for _ in range(s["warmup"]):
            t0 = time.perf_counter()
            rs[row][0].infer(feeds[row])
            if time.perf_counter() - t0 > s["round_budget_s"]:  # a slow variant: one timed call per round
                slow.add(row)
                break
    samples: dict[str, list[float]] = {row: [] for row in rows}
    for r in range(s["rounds"]):
        order = rows[r % len(rows) :] + rows[: r % len(rows)]
        for row in order:
            if row in slow and r >= SLOW_ROUNDS:
                continue
            runner, f = rs[row][0], feeds[row]
            if row not in slow:
                runner.infer(f)  # wake the thread pool: untimed
            deadline = time.perf_counter() + s["round_budget_s"]
            for i in range(s["runs"]):
                t0 = time.perf_counter()
                runner.infer(f)
                samples[row].append((time.perf_counter() - t0) * 1000.0)
                if row in slow or (i and time.perf_counter() > deadline):
                    break
    return {row: {"p10": float(np.percentile(t, 10)), "p50": float(np.percentile(t, 50)), "runs": len(t)}
            for row, t in samples.items()}


# -- report -----------------------------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def render(res: dict[str, Any], command: str) -> str:
    m = res["machine"]
    lines = [
        "# ExecuTorch beside onnxruntime and TFLite (benchmark)",
        "",
        f"Generated by `{command}` on {res['date']} (mode: {res['mode']}).",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores; flags {', '.join(m['flags']) or 'none'}), Python {m['python']}. "
        f"**The machine was loaded**: load average {', '.join(f'{x:.1f}' for x in m['loadavg_start'])} at the "
        f"start and {', '.join(f'{x:.1f}' for x in m['loadavg_end'])} at the end, on 2 cores shared with other "
        "engineers' work. Absolute milliseconds are inflated and noisy; the ratios were measured in one run with "
        "the variants interleaved round by round, so that the load hit every variant alike.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
        "",
    ]
    for name, r in res["models"].items():
        lines += render_model(name, r)
    lines += [
        "## How to read it",
        "",
        "- Every model is the same `nn.Module` converted by `edgeconv.convert(module, TARGET, precision=P, "
        "verify=False)`: onnxruntime and tflite through torch -> ONNX (TorchScript exporter), tflite then onnx2tf "
        "(its artifacts take NHWC input: edgeconv's runner adapts the input), executorch through torch.export. "
        "*convert s* is the wall time of that call; the second table splits ExecuTorch's into the report's stages.",
        "- Latency: edgeconv's runners (`infer` on a feed dict), batch 1, every runtime at its default thread count "
        "(2 here) and delegate; p50/p50 ratios from one interleaved run. A variant slower than the round budget "
        f"(the portable programs) is timed once per round in the first {SLOW_ROUNDS} rounds; its fidelity uses "
        f"the first {PORTABLE_SAMPLES} samples.",
        "- Fidelity is against eager PyTorch fp32 on the verification samples (random-weight networks: top-1 "
        "agreement, the digits CNN: labelled accuracy). PyTorch eager is not timed (module docstring).",
        "- *executorch fp32 portable* is the same program with no delegate: every operator on ExecuTorch's "
        "portable (reference) kernels -- what a model XNNPACK cannot take runs on.",
        "",
    ]
    return "\n".join(lines) + "\n"


def render_model(name: str, r: dict[str, Any]) -> list[str]:
    conv, lat, fid = r["convert"], r["latency"], r["fidelity"]
    base = lat.get("onnxruntime fp32", {}).get("p50")
    full = max(f["samples"] for f in fid.values())
    lines = [f"## {TITLES[name]}", "",
             "| variant | convert s | size MB | p10 ms | p50 ms | timed calls | / ORT fp32 | / ORT same prec. | "
             "/ TFLite same prec. | cosine | top-1 agree | " + ("accuracy |" if name == "digits" else "max abs |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [EAGER, *[v[0] for v in VARIANTS]]:
        c = conv.get(row, {})
        if "error" in c:
            lines.append(f"| {row} | failed: {c['error'][:160]} | | | | | | | | | | |")
            continue
        if row not in lat:
            continue
        p50 = lat[row]["p50"]
        prec = "fp32" if row == EAGER else row.split()[1]
        is_et = row.startswith("executorch") and "portable" not in row
        vs = [ratio(p50, lat.get(f"{t} {prec}", {}).get("p50")) if is_et else "-" for t in ("onnxruntime", "tflite")]
        f = fid[row]
        last = f"{f['accuracy'] * 100:.2f} %" if "accuracy" in f else f"{f['max_abs']:.3g}"
        if f["samples"] < full:
            last += f" ({f['samples']} samples)"
        secs = f"{c['seconds']:.1f}" if c else "-"
        size = f"{c['size_bytes'] / 1e6:.2f}" if c else "-"
        lines.append(f"| {row} | {secs} | {size} | {lat[row]['p10']:.3f} | {p50:.3f} | {lat[row]['runs']} | "
                     f"{ratio(p50, base)} | "
                     f"{vs[0]} | {vs[1]} | {f['cosine']:.6f} | {f['top1']:.3f} | {last} |")
    xnn, port = lat.get("executorch fp32", {}).get("p50"), lat.get("executorch fp32 portable", {}).get("p50")
    if xnn and port:
        lines += ["", f"The fully portable program (`-O delegate=none`) takes **{port / xnn:.0f}x** the time of the "
                      "XNNPACK fp32 program (p50/p50, this run)."]
    lines += ["", "ExecuTorch delegation and conversion stages:", "",
              "| variant | XNNPACK subgraphs | ops in XNNPACK | ops on portable kernels | delegated share | "
              "torch.export s | quantize s | lower s | serialize s |", "|---|---|---|---|---|---|---|---|---|"]
    for row, c in conv.items():
        if not row.startswith("executorch") or "error" in c:
            continue
        d, t = c["details"]["delegation"], c["timings"] or {}
        lines.append(f"| {row} | {d['subgraphs']} | {d['delegated_ops']} | {d['portable_ops']} | "
                     f"{d['delegated_share']} | {t.get('precheck', '-')} | {t.get('optimize', '-')} | "
                     f"{c['details'].get('lower_seconds', '-')} | {c['details'].get('serialize_seconds', '-')} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-executorch.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "executorch.json"))
    ap.add_argument("--render-only", metavar="JSON", help="write the markdown from a saved run; measure nothing")
    args = ap.parse_args(argv)
    if args.render_only:
        res = json.loads(Path(args.render_only).read_text())
        Path(args.out).write_text(render(res, res.get("command", "python benchmarks/executorch.py")))
        return 0
    s = SETTINGS["quick" if args.quick else "full"]
    models = [m for m in args.models.split(",") if m]
    res: dict[str, Any] = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                           "versions": versions(), "mode": "quick" if args.quick else "full", "settings": s,
                           "models": {}}
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-et-") as tmp:
        work = Path(tmp)
        warm_up(work)
        for name in models:
            model, example, calib, data = model_and_data(name, work, s)
            converted = convert_all(name, model, example, calib, data, work)
            import edgeconv

            src_io = edgeconv.load(model, options={"example_inputs": example}).io
            rs = runners(name, model, converted)
            log(f"{name}: fidelity on {data.name}")
            fid = fidelity(rs, src_io, data)
            log(f"{name}: latency ({len(rs)} variants, {s['rounds']} rounds)")
            lat = latency(rs, src_io, data, s)
            for runner, io in rs.values():
                if io is not None:
                    runner.deactivate()
            res["models"][name] = {"convert": converted, "fidelity": fid, "latency": lat}
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    command = "python benchmarks/executorch.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    res["command"] = command.strip()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    Path(args.out).write_text(render(res, res["command"]))
    log(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
