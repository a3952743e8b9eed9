"""Runtime settings that hold (issue #24): a setting other than the runtime's defaults is kept only when it beats
them in paired, interleaved rounds by more than the noise an A/A pair measured in the same run."""

from __future__ import annotations

import json

import pytest

from edgeconv.verification import tuning


def test_a_win_inside_the_noise_is_not_kept():
    default = [10.0, 10.0, 10.0, 10.0, 10.0]
    aa = [10.0, 13.0, 9.0, 12.5, 10.0]  # the same settings differ by up to 30 % in this run
    variant = [9.0, 9.0, 9.0, 9.0, 9.0]  # 10 % faster: inside the noise
    d = tuning.decide(default, {"intra_op_threads=1": variant}, aa)
    assert d["choice"] is None and d["variants"][0]["kept"] is False and d["noise"] > 1.2


def test_a_clear_win_on_a_quiet_run_is_kept():
    default = [10.0, 10.1, 9.9, 10.0, 10.0]
    aa = [10.0, 10.05, 9.95, 10.0, 10.02]
    d = tuning.decide(default, {"graph_optimization=basic": [8.0, 8.1, 7.9, 8.0, 8.0],
                                "graph_optimization=extended": [9.9, 10.0, 9.8, 10.1, 9.9]}, aa)
    assert d["choice"] == "graph_optimization=basic"
    kept = {v["settings"]: v["kept"] for v in d["variants"]}
    assert kept == {"graph_optimization=basic": True, "graph_optimization=extended": False}


def test_a_setting_faster_only_under_load_is_not_kept(monkeypatch):
    """The tuning loop fed timings with noise: one thread wins the two rounds where another process holds the
    other core, and loses once the machine is quiet. The paired median over rounds keeps the defaults."""
    clock = [0.0]
    round_of = {"n": 0}

    def fake_perf_counter():
        return clock[0]

    monkeypatch.setattr(tuning.time, "perf_counter", fake_perf_counter)
    calls = {"defaults": 0}

    def runner(kind):
        def run():
            r = round_of["n"]
            loaded = r < 2
            ms = {"defaults": 10.0 if not loaded else 14.0, "aa": 10.2 if not loaded else 13.5,
                  "threads=1": 9.0 if loaded else 13.0}[kind]
            clock[0] += ms / 1000.0
            if kind == "defaults":
                calls["defaults"] += 1
        return run

    contenders = [tuning.Contender(k, runner(k)) for k in ("defaults", "aa", "threads=1")]
    real = tuning.interleaved_rounds

    def counting(cs, rounds, per_round, warmup=2, status=None):
        for r in range(rounds):
            round_of["n"] = r
            real(cs, 1, per_round, warmup=warmup if r == 0 else 0)

    counting(contenders, 6, 3)
    d = tuning.decide(contenders[0].samples, {"threads=1": contenders[2].samples}, contenders[1].samples)
    assert d["choice"] is None, d
    assert any(s < 10 for s in contenders[2].samples[:2])  # it did win while the machine was loaded


def test_busy_machine_does_not_try_fewer_threads(monkeypatch):
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 2)
    assert tuning.takes_threads_away({"intra_op_threads": 1})
    assert tuning.takes_threads_away({"inference_num_threads": 1})
    assert not tuning.takes_threads_away({"graph_optimization": "basic"})


@pytest.fixture(scope="module")
def auto_busy(tmp_path_factory, digits):
    import edgeconv

    mp = pytest.MonkeyPatch()
    mp.setattr(tuning, "machine_load", lambda: {"load1": 7.5, "cores": 2, "busy": True})
    try:
        res = edgeconv.convert(str(digits["model"]), "onnxruntime", precision="auto",
                               calibration=str(digits["calib"]), data=str(digits["test"]),
                               output=tmp_path_factory.mktemp("a") / "o", runs=10, memory=False,
                               precisions=("fp32", "int8"), fallback=False)
    finally:
        mp.undo()
    return res


def test_auto_records_the_load_and_skips_thread_cuts_when_busy(auto_busy):
    t = auto_busy.report["auto"]["tuning"]
    assert t["load"]["busy"] and t["level"] == "quick" and t["rounds"] >= 5
    assert t["skipped"] and all("busy" in s for s in t["skipped"])
    tried = [v["settings"] for c in auto_busy.report["auto"]["candidates"] for v in c["settings_tried"]]
    assert tried and not any("thread" in s for s in tried)
    assert any("busy while tuning" in w for w in auto_busy.report["warnings"])
    assert t["winner"]["noise"] >= 1.0


def test_bench_times_stored_settings_against_the_defaults(auto_busy, tmp_path):
    import edgeconv

    folder = auto_busy.artifact
    m = json.loads((folder / "manifest.json").read_text())
    m["auto"]["runner_settings"] = {"graph_optimization": "disable"}
    m["runner_options"]["graph_optimization"] = "disable"
    (folder / "manifest.json").write_text(json.dumps(m))
    res = edgeconv.bench(folder, runs=5, memory=False)
    v = res["stored_settings"]
    assert v["settings"] == {"graph_optimization": "disable"} and v["ratio_to_defaults"] > 0 and v["noise"] >= 1.0
    assert edgeconv.bench(folder, runs=5, memory=False, tune="off")["stored_settings"] is None


def test_the_load_is_other_processes_cpu_use_not_this_conversion(monkeypatch):
    """On 2 cores the 1-minute load average counted the conversion itself and said busy on an idle machine: the
    load is other processes' CPU use over a short window while this process sleeps, less this process's own CPU
    time in that window (a runtime's thread pool spinning on)."""
    import time

    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tuning.os, "getloadavg", lambda: (3.9, 3.0, 2.0))  # this conversion's own load
    monkeypatch.setattr(time, "sleep", lambda s: None)

    def machine(busy_jiffies: int, own_seconds: float):
        ticks = iter([(1000, 10000), (1000 + busy_jiffies, 10100)])  # 100 jiffies of both cores in the window
        own = iter([5.0, 5.0 + own_seconds])
        monkeypatch.setattr(tuning, "_cpu_ticks", lambda: next(ticks))
        monkeypatch.setattr(time, "process_time", lambda: next(own))
        return tuning.machine_load()

    idle = machine(busy_jiffies=10, own_seconds=0.0)  # 0.2 cores used by others
    assert idle["busy"] is False and idle["others_busy_cores"] == 0.2 and idle["load1"] == 3.9
    spinning = machine(busy_jiffies=60, own_seconds=0.5)  # 1.2 cores busy, 1.0 of them this process: not busy
    assert spinning["busy"] is False and spinning["others_busy_cores"] == 0.2
    loaded = machine(busy_jiffies=70, own_seconds=0.0)  # another process burning 1.4 cores
    assert loaded["busy"] is True and loaded["others_busy_cores"] == 1.4


def test_the_load_is_measured_here():
    load = tuning.machine_load()
    cores = tuning.os.cpu_count() or 1
    assert load["measured"].startswith("other processes")  # Linux: /proc/stat
    assert 0.0 <= load["others_busy_cores"] <= cores
