#!/usr/bin/env python
"""The conversion matrix: throughput of the local pool and of Ray, and the per-cell overhead of each, in one run
(writes docs/benchmarks-matrix.md).

    python benchmarks/matrix.py [--targets onnxruntime,openvino,tflite] [--precisions fp32,int8] [--models 1]
                                [--overhead-cells 12] [--out docs/benchmarks-matrix.md]

1. **Throughput**: the digits matrix (``--models`` copies of the shipped digits CNN under different names, each
   with its calibration and labelled test split; ``--targets`` x ``--precisions``; default runs=50) run from
   scratch three times, in this order: the local pool with ``--workers 1``, with ``--workers 2``, and Ray on a
   two-node cluster on this machine (``ray.cluster_utils.Cluster``: a head and a second node, 1 CPU each, so two
   cells at a time, as with two workers). Cells per minute = cells / wall time of ``run_matrix`` (process or
   Ray start-up included: that is what a user waits for).
2. **Per-cell overhead**: ``--overhead-cells`` cheap cells (digits to onnxruntime fp32, runs=5, no peak-memory
   probe: about a second of work each) on each backend. Overhead per cell = (wall x parallelism - the sum of the
   cells' own time inside ``run_cell``) / cells: what the backend adds around the conversion (process start and
   imports, pickling, for Ray: the task, the store round trips of inputs and outputs, writing the output into
   OUT). Ray is measured *cold* (a new driver: its workers start and import edgeconv) and *warm* (the same
   driver again: workers reused), the local pool always cold (its processes live as long as one run).
3. **A model** of 100 models x 6 targets x 3 precisions (1,800 cells) on N nodes, from the measured in-cell times
   and overheads (docs/benchmarks-matrix.md says which assumptions).

The machine is shared (load average recorded): compare the ratios, measured in the same run, not absolute times.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = line.split(":", 1)[1].split()
                flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                         if f in have]
    except OSError:
        pass
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def make_spec(folder: Path, models: int, targets: list[str], precisions: list[str], runs: int | None,
              name: str = "spec.yaml", memory: bool = True) -> Path:
    """A spec in ``folder`` (the digits files copied beside it), ``models`` copies of digits under other names."""
    from edgeconv.demo import sample_files

    s = sample_files()
    for key, dest in (("model", "digits.onnx"), ("test", "digits_test.npz"), ("calib", "digits_calib.npz")):
        if not (folder / dest).exists():
            shutil.copy(s[key], folder / dest)
    lines = ["models:"]
    for i in range(models):
        lines.append(f"  - {{name: m{i:03d}, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}}")
    lines.append(f"targets: [{', '.join(targets)}]")
    lines.append(f"precisions: [{', '.join(precisions)}]")
    lines.append("budgets: {max_accuracy_drop: 1}")
    if runs is not None:
        lines.append(f"runs: {runs}")
    if not memory:
        lines.append("memory: false")
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(spec: Path, out: Path, backend: Any, parallel: int) -> dict[str, Any]:
    from edgeconv.matrix.live import Progress
    from edgeconv.matrix.runner import run_matrix
    from edgeconv.matrix.spec import load_spec

    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    outcome = run_matrix(load_spec(spec), out, backend=backend, progress=Progress(live=False, stream=io.StringIO()))
    wall = time.monotonic() - started
    inside = [r["seconds"] or 0.0 for r in outcome.records]
    return {"cells": len(outcome.records), "wall": wall, "cells_per_min": 60 * len(outcome.records) / wall,
            "inside_sum": sum(inside), "inside_mean": statistics.mean(inside) if inside else 0.0,
            "overhead_per_cell": (wall * parallel - sum(inside)) / max(1, len(outcome.records)),
            "statuses": sorted({r["status"] for r in outcome.records}), "exit_code": outcome.exit_code,
            "by_cell": {r["id"]: r["seconds"] for r in outcome.records},
            "errors": {r["id"]: r["error"] for r in outcome.records if r["status"] in ("error", "lost")},
            "passed_mean": statistics.mean([r["seconds"] or 0.0 for r in outcome.records if r["status"] == "pass"]
                                           or [0.0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="onnxruntime,openvino,tflite")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--models", type=int, default=1)
    ap.add_argument("--overhead-cells", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-matrix.md"))
    args = ap.parse_args()
    targets, precisions = args.targets.split(","), args.precisions.split(",")

    work = Path(tempfile.mkdtemp(prefix="edgeconv-bench-matrix-"))
    os.environ["EDGECONV_MATRIX_STORE"] = str(work / "store")
    os.environ["EDGECONV_MATRIX_CACHE"] = str(work / "cache")
    load_start = os.getloadavg()
    from edgeconv.matrix.local import LocalBackend
    from edgeconv.matrix.ray_backend import RayBackend

    spec = make_spec(work, args.models, targets, precisions, None)
    cheap = make_spec(work, args.overhead_cells, ["onnxruntime"], ["fp32"], 5, name="cheap.yaml", memory=False)
    results: dict[str, Any] = {}
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    for name, workers in (("local, --workers 1", 1), ("local, --workers 2", 2)):
        say(f"throughput: {name}")
        results[name] = run_once(spec, work / f"out-{workers}", LocalBackend(workers), workers)
    from ray.cluster_utils import Cluster

    say("starting a two-node Ray cluster")
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster_start = time.monotonic() - t0
    try:
        say("throughput: Ray, two nodes")
        results["Ray, two nodes"] = run_once(spec, work / "out-ray", RayBackend(cluster.address), 2)
        overhead: dict[str, Any] = {}
        for name, workers in (("local, --workers 1", 1), ("local, --workers 2", 2)):
            say(f"overhead: {name}")
            overhead[name] = run_once(cheap, work / f"cheap-{workers}", LocalBackend(workers), workers)
        # recover=False: the same cells again must be converted again, not found in the store
        say("overhead: Ray cold")
        overhead["Ray, two nodes, cold driver"] = run_once(cheap, work / "cheap-ray", RayBackend(
            cluster.address, recover=False), 2)
        import ray

        ray.init(address=cluster.address, namespace="edgeconv", log_to_driver=False)  # one driver for both runs
        run_once(cheap, work / "cheap-ray-w0", RayBackend(cluster.address, recover=False), 2)
        say("overhead: Ray warm")
        overhead["Ray, two nodes, warm driver"] = run_once(cheap, work / "cheap-ray-w", RayBackend(
            cluster.address, recover=False), 2)
        say("recovery: the same cells again, a new driver, results found in the store")
        recovered = run_once(cheap, work / "cheap-ray-r", RayBackend(cluster.address), 2)
        ray.shutdown()
    finally:
        cluster.shutdown()
    load_end = os.getloadavg()
    Path(args.out).write_text(render(args, machine(), results, overhead, cluster_start, load_start, load_end,
                                     recovered))
    shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {args.out}")


def model_rows(results: dict[str, Any], overhead: dict[str, Any]) -> tuple[float, float, list[str]]:
    """Seconds of one cell's own work (mean over the measured matrix, sequential run) and the Ray per-cell
    overhead (warm), and the estimated wall time of 1,800 cells on N nodes."""
    cell = results["local, --workers 1"]["passed_mean"]
    ray_over = max(0.0, overhead["Ray, two nodes, warm driver"]["overhead_per_cell"])
    rows = []
    n_cells = 100 * 6 * 3
    for nodes, cores in ((1, 8), (2, 8), (4, 8), (8, 8), (16, 8), (32, 8)):
        slots = nodes * cores
        hours = n_cells * (cell + ray_over) / slots / 3600
        rows.append(f"| {nodes} | {cores} | {slots} | {hours:.2f} h | {60 * slots / (cell + ray_over):.0f} |")
    return cell, ray_over, rows


def render(args, m, results, overhead, cluster_start, load_start, load_end, recovered) -> str:
    import ray

    import edgeconv

    base = results["local, --workers 1"]["cells_per_min"]
    lines = [
        "# Benchmarks: the conversion matrix (local pool and Ray)", "",
        f"Generated by `python benchmarks/matrix.py --targets {args.targets} --precisions {args.precisions} "
        f"--models {args.models} --overhead-cells {args.overhead_cells}` on "
        f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.", "",
        f"Machine: {m['cpu']} ({', '.join(m['flags']) or 'no avx512/amx flags'}), {m['cores']} cores, {m['platform']}, "
        f"Python {m['python']}. Load average at the start {', '.join(f'{x:.1f}' for x in load_start)}, at the end "
        f"{', '.join(f'{x:.1f}' for x in load_end)}: other engineers' work shared the two cores, so compare the "
        "ratios, measured in the same run, not the absolute times.", "",
        f"Versions: edgeconv {edgeconv.__version__}, Ray {ray.__version__}. How: see the docstring of "
        "`benchmarks/matrix.py`. The two-node Ray cluster (head + one node, 1 CPU each, on this machine) took "
        f"{cluster_start:.1f} s to start (not counted below).", "",
        "## Throughput: the digits matrix, from scratch", "",
        "| backend | cells | wall (s) | cells / min | vs --workers 1 | sum of in-cell time (s) | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['cells']} | {r['wall']:.1f} | {r['cells_per_min']:.2f} | "
                     f"{r['cells_per_min'] / base:.2f}x | {r['inside_sum']:.1f} | {', '.join(r['statuses'])} |")
    for name, r in results.items():
        for cid, err in r["errors"].items():
            lines.append(f"\n{name}: {cid} did not pass: {err}")
    lines += ["", "In-cell time per cell (s), `--workers 1` / `--workers 2` / Ray:", "",
              "| cell | w1 | w2 | Ray |", "|---|---|---|---|"]
    names = list(results)
    for cid in results[names[0]]["by_cell"]:
        lines.append(f"| {cid} | " + " | ".join(f"{results[n]['by_cell'].get(cid) or 0:.1f}" for n in names) + " |")
    lines += ["", f"## Per-cell overhead: {args.overhead_cells} cheap cells (digits, onnxruntime fp32, runs=5)", "",
              "| backend | wall (s) | parallel | sum of in-cell time (s) | overhead per cell (s) |",
              "|---|---|---|---|---|"]
    for name, r in overhead.items():
        par = 1 if "workers 1" in name else 2
        lines.append(f"| {name} | {r['wall']:.1f} | {par} | {r['inside_sum']:.1f} | {r['overhead_per_cell']:.2f} |")
    local2 = overhead["local, --workers 2"]["overhead_per_cell"]
    warm = overhead["Ray, two nodes, warm driver"]["overhead_per_cell"]
    cold = overhead["Ray, two nodes, cold driver"]["overhead_per_cell"]
    lines += ["", f"Ray against the local pool (both two at a time): cold {cold - local2:+.2f} s per cell, warm "
              f"{warm - local2:+.2f} s per cell (overhead = wall x parallelism - in-cell time, per cell).", "",
              f"Recovery: the same {recovered['cells']} cells with a new driver, their results found in the store by "
              f"cell key (nothing converted): {recovered['wall']:.1f} s.", ""]
    cell, over, rows = model_rows(results, overhead)
    lines += [
        "## A model: 100 models x 6 targets x 3 precisions (1,800 cells) on N nodes", "",
        f"From this run: one cell's own work = {cell:.1f} s (mean in-cell time of the passed digits cells at "
        f"`--workers 1`), Ray's per-cell overhead (warm) = {over:.2f} s. Estimated wall time = 1,800 x (cell + "
        "overhead) / (nodes x cells at a time per node), one cell per core:", "",
        "| nodes | cores each | cells at a time | estimated wall | cells / min |", "|---|---|---|---|---|", *rows, "",
        "Assumptions, and what would change the figures:",
        "",
        "- The digits CNN is tiny: a real model's cell is dominated by its conversion and verification, which "
        "take longer (not measured by this harness), so scale *cell* by the model, and keep the overhead.",
        "- Six targets: three were measured here (onnxruntime, openvino, tflite); a target in a toolchain environment "
        "verified in a simulator (sophon's cmodel: about a second per sample, as `edgeconv/demo.py` notes) or compiled by a vendor tool (trtexec, "
        "atc) costs more per cell, and runs only on the nodes that advertise its toolchain (`toolchain:<name>`), so "
        "those cells are bounded by those nodes' cores, not the cluster's.",
        "- Board cells run one at a time per physical board (one actor per board): 1,800 cells on K boards take at "
        "least 1,800 x (cell on the board) / K, whatever the number of hosts.",
        "- Every input and output passes through the head's store actor: with large models the head's network and "
        "disk, not the CPUs, bound the throughput (a shared `--store` path every node mounts avoids the actor).",
        "- Cells per core: a conversion that uses several threads (OpenVINO, TensorFlow) competes with its neighbours; "
        "one cell per core (`num_cpus=1`) is the default, latency figures of cells that ran side by side are "
        "polluted (board cells are not: their latency is measured on the board, one run at a time).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
