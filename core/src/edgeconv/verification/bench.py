"""Latency after warm-up, and the peak memory of a runner (in a fresh process)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .runners import Runner


def latency(
    runner: Runner,
    feed: dict[str, np.ndarray],
    *,
    runs: int = 50,
    warmup: int = 5,
    max_seconds: float = 10.0,
) -> dict[str, Any]:
    """Time ``runs`` inferences after ``warmup`` ones (stops early at ``max_seconds``).

    A runner that times itself where it runs (a board's runner: the loop runs on the board, not one network
    round trip per inference) offers ``time_runs(feed, runs=, warmup=, max_seconds=) -> list[float]`` (ms).
    """
    import numpy as np

    if hasattr(runner, "time_runs"):
        times = list(runner.time_runs(feed, runs=max(1, runs), warmup=warmup, max_seconds=max_seconds))
    else:
        times = _time_locally(runner, feed, runs, warmup, max_seconds)
    t = np.array(times)
    batch = max((a.shape[0] if a.ndim else 1) for a in feed.values()) if feed else 1
    p50 = float(np.percentile(t, 50))
    return {
        "p10": float(np.percentile(t, 10)),
        "p50": p50,
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
        "mean": float(t.mean()),
        "runs": len(times),
        "warmup": warmup,
        "throughput_per_s": float(batch * 1000.0 / p50) if p50 > 0 else None,
        "samples_ms": [round(x, 4) for x in times],  # the distribution, for plots
    }


def _time_locally(runner: Runner, feed: dict[str, np.ndarray], runs: int, warmup: int, max_seconds: float) -> list[float]:
    for _ in range(warmup):
        runner.run(feed)
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        runner.run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
        if time.perf_counter() > deadline and len(times) >= 5:
            break
    return times


def peak_memory(form: str, path: Path, runner_options: dict[str, Any], feed_file: Path, timeout: float = 300) -> dict[str, Any]:
    """Load the model with its runner in a fresh Python and run one inference.

    Returns ``peak_rss_bytes`` (the process's high-water mark) and ``baseline_rss_bytes``
    (after importing the runner's modules, before loading the model), so that
    ``model_rss_bytes`` = peak - baseline is what the model itself costs.
    """
    from .. import worker
    from ..errors import ToolchainFailed, ToolchainMissing

    job = json.dumps({"form": form, "path": str(Path(path).absolute()), "options": runner_options,
                      "feed": str(Path(feed_file).absolute())})
    try:  # an isolated child in a scratch folder: nothing from the user's folder is imported (docs/security.md)
        done = worker.run(worker.python_argv(module="edgeconv.verification.bench", args=[job]), timeout=timeout,
                          what="the peak-memory probe")
    except (ToolchainFailed, ToolchainMissing) as exc:
        return {"error": exc.cause}
    if not done.ok:
        return {"error": f"{worker.describe_exit(done.returncode)}: {done.tail(1)}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_kb(field: str) -> int:
    """A memory field of /proc/self/status, in bytes. VmHWM (the peak) belongs to this
    process image; ru_maxrss would carry over the parent's peak across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from ..model import IOContract, Model
    from ..plugins import registry
    from ..records import load_ref

    spec = registry().runners[job["form"]]
    factory = load_ref(spec.factory)
    with np.load(job["feed"], allow_pickle=False) as z:
        feed = {k: z[k] for k in z.files}
    model = Model(form=job["form"], io=IOContract((), ()), path=Path(job["path"]))
    runner = factory(model, **job["options"])
    # Import the runtime before the baseline so that only the model's cost is counted.
    import importlib

    for mod in getattr(runner, "modules", ()):
        importlib.import_module(mod)
    baseline = _status_kb("VmRSS")
    runner.open()
    runner.run(feed)
    peak = _status_kb("VmHWM")
    runner.close()
    return {"peak_rss_bytes": peak, "baseline_rss_bytes": baseline, "model_rss_bytes": max(0, peak - baseline)}


if __name__ == "__main__":
    print(json.dumps(_measure(json.loads(sys.argv[1]))))
