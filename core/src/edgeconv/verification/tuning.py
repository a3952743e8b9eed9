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


def machine_load() -> dict[str, Any]:
    """The 1-minute load average against the cores: ``busy`` when above half of them."""
    cores = os.cpu_count() or 1
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return {"load1": None, "cores": cores, "busy": False}
    return {"load1": round(load1, 2), "cores": cores, "busy": load1 > 0.5 * cores}


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
