"""Runtime settings that hold: a setting other than the runtime's defaults is kept only when it beats the defaults
in paired, interleaved rounds by more than the noise the same run measured (docs/auto.md).

One timing says little on a shared machine: a thread count of 1 can win a round while another process holds the
other core and lose every round once the machine is quiet. So every contender (the defaults, each variant, and
the defaults a second time: the A/A pair) runs a few inferences per round, in a rotating order, for several
rounds; each round gives one median per contender. A variant's effect is the median over rounds of
log(variant / defaults) in the same round; the noise is the largest |log(A' / A)| of the A/A pair. A variant is
kept only when it is faster by more than the noise plus a margin. While the machine is busy (load above half its
cores) variants that take threads away are not tried at all: they would win against the contention, not for the
deployment.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MARGIN = 0.03  # a kept variant is at least 3 % faster than the defaults beyond the measured noise
TUNE_LEVELS = {"off": (0, 0), "quick": (5, 10), "full": (9, 20)}  # rounds, inferences per round


LOAD_WINDOW_S = 0.5  # how long the machine's CPU use is sampled, this process idle


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def others_busy_cores(window: float = LOAD_WINDOW_S) -> float | None:
    """How many cores other processes keep busy: the machine's CPU use over ``window`` seconds while this process
    sleeps, less this process's own (a runtime's spinning thread pool). None where /proc/stat is missing."""
    import time

    cores = os.cpu_count() or 1
    a, own_a = _cpu_ticks(), time.process_time()
    if a is None:
        return None
    time.sleep(window)
    b, own_b = _cpu_ticks(), time.process_time()
    if b is None or b[1] <= a[1]:
        return None
    busy = (b[0] - a[0]) / (b[1] - a[1]) * cores - (own_b - own_a) / window
    return round(max(0.0, busy), 2)


def machine_load() -> dict[str, Any]:
    """Whether other work competes for the cores while settings are timed: ``busy`` when other processes keep
    more than half of them busy, measured now over a short window with this process idle. (The 1-minute load
    average, kept for the record, counts this very conversion: on 2 cores it said busy on an idle machine.)"""
    cores = os.cpu_count() or 1
    try:
        load1: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load1 = None
    others = others_busy_cores()
    if others is None:  # no /proc/stat: the load average is all there is
        return {"load1": load1, "cores": cores, "busy": load1 is not None and load1 > 0.5 * cores,
                "measured": "load average"}
    return {"load1": load1, "cores": cores, "others_busy_cores": others, "busy": others > 0.5 * cores,
            "measured": f"other processes' CPU use over {LOAD_WINDOW_S:g} s"}


def load_text(load: dict[str, Any]) -> str:
    """How busy the machine was, in words: other processes' cores, else the load average."""
    if load.get("others_busy_cores") is not None:
        return f"other processes kept {load['others_busy_cores']:g} of {load['cores']} cores busy"
    return f"load {load.get('load1')} on {load.get('cores')} cores"


def takes_threads_away(settings: dict[str, Any]) -> bool:
    """A variant that lowers a thread or stream count below the runtime's default (all cores)."""
    cores = os.cpu_count() or 1
    for key, value in settings.items():
        if any(word in key for word in ("thread", "stream")) and isinstance(value, int) and value < cores:
            return True
    return False


@dataclass
class Contender:
    """One runner configuration being timed: ``key`` names it, ``run`` is one inference."""

    key: str
    run: Callable[[], Any]
    samples: list[float] = field(default_factory=list)  # one median per round, ms
    all_ms: list[float] = field(default_factory=list)


def interleaved_rounds(contenders: Sequence[Contender], rounds: int, per_round: int, warmup: int = 2,
                       status: Callable[[str], None] | None = None) -> None:
    """Time every contender ``per_round`` times in each of ``rounds`` rounds, the order rotated every round."""
    import statistics

    for c in contenders:
        for _ in range(warmup):
            c.run()
    n = len(contenders)
    for r in range(rounds):
        if status:
            status(f"timing {n} runtime settings, round {r + 1}/{rounds}")
        order = [contenders[(i + r) % n] for i in range(n)]
        for c in order:
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                c.run()
                times.append((time.perf_counter() - t0) * 1000.0)
            c.samples.append(statistics.median(times))
            c.all_ms += times


def paired_effect(default: Sequence[float], variant: Sequence[float]) -> float:
    """The median over rounds of log(variant / default) in the same round (negative: the variant is faster)."""
    import statistics

    logs = [math.log(v / d) for d, v in zip(default, variant, strict=True) if d > 0 and v > 0]
    return statistics.median(logs) if logs else 0.0


def aa_noise(first: Sequence[float], second: Sequence[float]) -> float:
    """The largest |log(A' / A)| over rounds: how much two runs of the same settings differ in this run."""
    logs = [abs(math.log(b / a)) for a, b in zip(first, second, strict=True) if a > 0 and b > 0]
    return max(logs) if logs else 0.0


def decide(default: Sequence[float], variants: dict[str, Sequence[float]], aa: Sequence[float],
           margin: float = MARGIN) -> dict[str, Any]:
    """Which setting to keep: the fastest variant whose paired win over the defaults exceeds the A/A noise plus the
    margin, else the defaults. Returns the choice and every variant's ratio with its verdict."""
    noise = aa_noise(default, aa)
    rows, best, best_effect = [], None, 0.0
    for key, samples in variants.items():
        effect = paired_effect(default, samples)
        kept = effect < -(noise + margin)
        rows.append({"settings": key, "ratio": round(math.exp(effect), 4), "kept": kept})
        if kept and effect < best_effect:
            best, best_effect = key, effect
    return {"choice": best, "noise": round(math.exp(noise), 4), "margin": margin, "variants": rows}


def latency_record(c: Contender, feed_batch: int, warmup: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    t = np.array(c.all_ms)
    lat = {"p10": float(np.percentile(t, 10)), "p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
           "p99": float(np.percentile(t, 99)), "mean": float(t.mean()), "runs": len(t), "warmup": warmup,
           "rounds": rounds, "samples_ms": [round(float(x), 4) for x in t]}
    lat["throughput_per_s"] = feed_batch * 1000.0 / lat["p50"] if lat["p50"] > 0 else None
    return lat
