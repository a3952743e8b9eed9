"""Budgets decide the exit code; outputs are atomic, locked, never overwritten silently."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

import edgeconv
from edgeconv.report import Budgets, parse_ms, parse_pp, parse_size


@pytest.mark.parametrize(
    ("args", "code", "failed"),
    [
        (["--max-size", "1MB", "--max-latency", "10s", "--max-accuracy-drop", "0.5"], 0, None),
        (["--max-size", "10KB"], 1, "size_bytes"),
        (["--max-latency", "0.000001ms"], 1, "latency_ms_p50"),
        (["-p", "int8", "--calib", "random", "--max-accuracy-drop", "0"], None, "accuracy_drop_pp"),
    ],
)
def test_budgets_turn_into_exit_codes(cli, digits, tmp_path, args, code, failed):
    res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--data", str(digits["test"]),
              "--runs", "5", "--no-memory", "--json", *args)
    report = json.loads(res.stdout)
    budgets = report["budgets"]
    if failed is None:
        assert res.exit_code == 0 and all(b["pass"] for b in budgets.values())
        assert set(budgets) == {"size_bytes", "latency_ms_p50", "accuracy_drop_pp"}
        return
    # random calibration may or may not cost accuracy: the budget's own verdict sets the code
    expected = code if code is not None else (0 if budgets[failed]["pass"] else 1)
    assert res.exit_code == expected
    if expected == 1:
        assert report["verdict"]["status"] == "fail" and failed in report["verdict"]["reason"]
    assert (tmp_path / "o" / "report.json").is_file()  # a failed budget still leaves the artifact to inspect


def test_accuracy_budget_without_labels_uses_top1_disagreement(digits, tmp_path):
    r = edgeconv.convert(digits["model"], output=tmp_path / "o", runs=3, memory=False,
                         budgets=Budgets.parse(max_accuracy_drop="1"))
    b = r.report["budgets"]["accuracy_drop_pp"]
    assert b["value"] == 0 and b["pass"] and "top-1 disagreement" in b["proxy"]


def test_budget_parsers():
    assert parse_size("25MB") == 25_000_000 and parse_size("1KiB") == 1024 and parse_size(7) == 7
    assert parse_ms("0.1s") == 100 and parse_ms("250us") == 0.25 and parse_ms("40") == 40
    assert parse_pp("0.5pp") == 0.5 and parse_pp("1%") == 1
    for bad in ("ten MB", "5 parsecs"):
        with pytest.raises(edgeconv.errors.BadInput):
            parse_size(bad)


def test_existing_output_needs_force_and_is_left_untouched(cli, digits, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = cli("convert", str(digits["model"]), "-o", str(out), "--no-verify")
    assert res.exit_code == 2 and "--force" in res.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --force replaces only edgeconv's own output folders (one with its manifest), never a folder of the user's
    res = cli("convert", str(digits["model"]), "-o", str(out), "--no-verify", "--force")
    assert res.exit_code == 2 and "not an edgeconv output" in res.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out = tmp_path / "e"
    assert cli("convert", str(digits["model"]), "-o", str(out), "--no-verify").exit_code == 0
    res = cli("convert", str(digits["model"]), "-o", str(out), "--no-verify")
    assert res.exit_code == 2 and "--force" in res.stderr
    res = cli("convert", str(digits["model"]), "-o", str(out), "--no-verify", "--force")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["digits_cnn.onnx", "manifest.json", "report.json"]
    assert not list(tmp_path.glob(".e.*"))  # no staging folder, no lock file, no backup left


def test_output_path_that_is_a_file(cli, digits, tmp_path):
    f = tmp_path / "o"
    f.write_text("x")
    res = cli("convert", str(digits["model"]), "-o", str(f), "--force")
    assert res.exit_code == 2 and "is a file" in res.stderr and f.read_text() == "x"


def test_failure_midway_leaves_nothing(fresh_plugins, cli, digits, tmp_path):
    class Crash:
        @edgeconv.hookimpl(wrapper=True)
        def run_stage(self, stage, call):
            result = yield
            if stage == "verify":
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C during verification
            return result

    fresh_plugins.register_plugin(Crash(), "crash")
    try:
        res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"))
        assert res.exit_code == 130 and "interrupted" in res.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        fresh_plugins.unregister_plugin("crash")


def test_concurrent_runs_into_one_folder_are_refused(cli, digits, tmp_path):
    lock = open(tmp_path / ".o.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
    try:
        res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--no-verify")
        assert res.exit_code == 2 and "another edgeconv run" in res.stderr
        assert not (tmp_path / "o").exists()
    finally:
        lock.close()


def test_sigterm_mid_conversion_removes_the_staging_folder(digits, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    exe = Path(sys.executable).parent / "edgeconv"
    proc = subprocess.Popen([str(exe), "convert", str(digits["model"]), "-p", "int8", "--calib", str(digits["calib"]),
                             "-o", str(tmp_path / "o"), "--runs", "2000"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".o.tmp-*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".o.tmp-*")), "the conversion never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_leaves_nothing(cli, digits, tmp_path, monkeypatch):
    import errno

    import onnx

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)  # the exporter's writer fails as on a full disk
    res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--no-verify")
    assert res.exit_code == 2
    assert "cannot write the output (No space left on device)" in res.stderr and str(tmp_path / "o") in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(cli, digits, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should be: not writable as a parent, even for root
    res = cli("convert", str(digits["model"]), "-o", str(blocker / "sub" / "o"), "--no-verify")
    assert res.exit_code == 2 and "cannot write to the output folder" in res.stderr
    assert blocker.read_text() == "x"


def test_sigint_mid_conversion_removes_the_staging_folder(digits, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    exe = Path(sys.executable).parent / "edgeconv"
    # A shell without job control starts background jobs with SIGINT ignored, and the child would
    # inherit that: give it the default disposition, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen([str(exe), "convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--runs", "100000"],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".o.tmp-*")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
