"""The conversion matrix on the local pool (docs/matrix.md): bad specs, cell keys, records, resumability, a failing
cell that does not stop the others, a worker that dies, Ctrl-C. The digits matrix compared across the local pool
and Ray is in tests/test_fleet.py.

The commands are driven through a Typer app built here with ``edgeconv.cli.matrix.register`` (the lead wires
them into the real CLI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgeconv.matrix import cells as cells_mod
from edgeconv.matrix import index_html
from edgeconv.cli.matrix import register
from edgeconv.matrix.live import Progress
from edgeconv.matrix.local import LocalBackend
from edgeconv.matrix.results import ResultsFile
from edgeconv.matrix.runner import run_matrix
from edgeconv.matrix.spec import load_spec


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def run_cli(*args: str):
    return CliRunner().invoke(app(), list(args))


@pytest.fixture
def folder(tmp_path, digits):
    """A spec folder with the digits sample beside it (the names the issue's spec uses)."""
    for name, src in (("digits.onnx", digits["model"]), ("digits_test.npz", digits["test"]),
                      ("digits_calib.npz", digits["calib"])):
        shutil.copy(src, tmp_path / name)
    return tmp_path


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


MODEL = "models: [{name: digits, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}]\n"


# -- bad specs: exit 2, one line naming the spec and the key, nothing written ----------------------------------------
BAD_SPECS = [
    ("model: []\ntargets: [onnxruntime]\n", "unknown key 'model'", "did you mean 'models'"),
    ("models: digits.onnx\ntargets: [onnxruntime]\n", "models: must be a list", None),
    ("models: [{name: d}]\ntargets: [onnxruntime]\n", "models[0]: 'source' is required", None),
    ("models: [{name: d, source: digits.onnx, calibration: digits_calib.npz}]\ntargets: [onnxruntime]\n",
     "unknown key 'calibration'", "did you mean 'calib'"),
    ("models: [{name: d, source: /etc/hostname}]\ntargets: [onnxruntime]\n", "is an absolute path", "--allow-outside"),
    ("models: [{name: d, source: ../x.onnx}]\ntargets: [onnxruntime]\n", "points outside the spec's folder", None),
    ("models: [{name: d, source: nothere.onnx}]\ntargets: [onnxruntime]\n", "no such file or folder", None),
    ("models: [{name: 'a b', source: digits.onnx}]\ntargets: [onnxruntime]\n", "models[0].name", None),
    (MODEL + "targets: [onnxrt]\n", "targets[0].name", "did you mean 'onnxruntime'"),
    (MODEL + "targets: [{name: onnxruntime, options: {bogus: 1}}]\n", "has no option 'bogus'", None),
    (MODEL + "targets: [onnxruntime]\nprecisions: [fp32, int9]\n", "precisions[1]", "did you mean 'int8'"),
    (MODEL + "targets: [onnxruntime]\nbudgets: {max_accuracy_drop: lots}\n", "budgets", None),
    (MODEL + "targets: [onnxruntime]\nbudgets: {max_acuracy_drop: 1}\n", "unknown key 'max_acuracy_drop'",
     "did you mean 'max_accuracy_drop'"),
    (MODEL + "targets: [onnxruntime]\nruns: 0\n", "runs: must be a whole number", None),
    (MODEL + "targets: [onnxruntime]\nboards: [{kind: rk3588, name: b1}]\n", "exactly one of 'kind'", None),
    (MODEL + "targets: [onnxruntime]\ntargets: [tflite]\n", "duplicate key 'targets'", None),
    ("x: &a [1]\n" + MODEL + "targets: *a\n", "aliases", None),
    (MODEL + "targets: [onnxruntime\n", "not valid YAML", None),
    ("", "the spec is empty", None),
]


@pytest.mark.parametrize(("text", "fragment", "hint"), BAD_SPECS, ids=[b[1][:30] for b in BAD_SPECS])
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(folder, text, fragment, hint):
    spec = write_spec(folder, text)
    before = sorted(p.name for p in folder.iterdir())
    res = run_cli("matrix", str(spec), "-o", str(folder / "out"))
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeconv: error: "), res.stderr
    assert str(spec) in lines[0] and fragment in lines[0], lines[0]
    assert hint is None or hint in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert sorted(p.name for p in folder.iterdir()) == before  # no output folder, inputs untouched


def test_paths_outside_need_allow_outside(folder):
    sub = folder / "specs"
    sub.mkdir()
    spec = write_spec(sub, "models: [{name: d, source: ../digits.onnx}]\ntargets: [onnxruntime]\n")
    res = run_cli("matrix", str(spec), "-o", str(folder / "out"))
    assert res.exit_code == 2 and "points outside" in res.stderr
    loaded = load_spec(spec, allow_outside=True)
    assert loaded.models[0].source == (folder / "digits.onnx").resolve()


def test_out_holding_other_files_is_refused(folder):
    spec = write_spec(folder, MODEL + "targets: [onnxruntime]\n")
    (folder / "out").mkdir()
    (folder / "out" / "notes.txt").write_text("mine")
    res = run_cli("matrix", str(spec), "-o", str(folder / "out"))
    assert res.exit_code == 2 and "holds other files" in res.stderr
    assert (folder / "out" / "notes.txt").read_text() == "mine"


# -- keys -----------------------------------------------------------------------------------------------------------
def test_cell_keys_follow_the_inputs_not_the_paths(folder, tmp_path_factory):
    text = MODEL + "targets: [onnxruntime]\nprecisions: [fp32, int8]\nbudgets: {max_accuracy_drop: 1}\n"
    plan = cells_mod.plan_cells(load_spec(write_spec(folder, text)))
    assert [c.id for c in plan.cells] == ["digits/onnxruntime/fp32", "digits/onnxruntime/int8"]
    assert len({c.key for c in plan.cells}) == 2
    # the same files and spec in another folder: the same keys (paths do not decide, content does)
    other = tmp_path_factory.mktemp("elsewhere")
    for p in folder.glob("digits*"):
        shutil.copy(p, other / p.name)
    again = cells_mod.plan_cells(load_spec(write_spec(other, text)))
    assert [c.key for c in again.cells] == [c.key for c in plan.cells]
    # other data content, other budgets: other keys
    with np.load(other / "digits_test.npz") as d:
        np.savez(other / "digits_test.npz", **{k: d[k][:50] for k in d.files})
    changed = cells_mod.plan_cells(load_spec(other / "spec.yaml"))
    assert not {c.key for c in changed.cells} & {c.key for c in plan.cells}
    budget = cells_mod.plan_cells(load_spec(write_spec(folder, text.replace("1}", "2}"), "b.yaml")))
    assert not {c.key for c in budget.cells} & {c.key for c in plan.cells}
    # the toolchain's versions are part of the key material
    material = plan.cells[0].key_material(cells_mod.target_versions("onnxruntime"))
    assert material["versions"]["onnxruntime"] and material["edgeconv"]


def test_precisions_a_target_does_not_offer_are_listed_not_run(folder):
    spec = load_spec(write_spec(folder, MODEL + "targets: [onnxruntime]\nprecisions: [fp32, bf16]\n"))
    plan = cells_mod.plan_cells(spec)
    assert [c.precision for c in plan.cells] == ["fp32"]
    assert plan.skipped == [{"model": "digits", "target": "onnxruntime", "precision": "bf16",
                             "reason": plan.skipped[0]["reason"]}] and "offers" in plan.skipped[0]["reason"]


# -- records --------------------------------------------------------------------------------------------------------
def test_any_exception_in_a_cell_becomes_its_record(folder, monkeypatch):
    import edgeconv

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(edgeconv, "convert", boom)
    cell = cells_mod.plan_cells(load_spec(write_spec(folder, MODEL + "targets: [onnxruntime]\n"))).cells[0]
    rec = cells_mod.run_cell(cell, folder / "o")
    assert rec["status"] == "error" and rec["exit_code"] == 4 and rec["report"] is None
    assert rec["error"] == "internal error: RuntimeError: boom second line"
    assert rec["key"] == cell.key and rec["placement"]["pid"] == os.getpid()


def test_results_file_tolerates_a_torn_line_and_never_writes_a_key_twice(tmp_path):
    path = tmp_path / "results.jsonl"
    good = {"schema": cells_mod.CELL_SCHEMA, "key": "a" * 64, "status": "pass"}
    path.write_text(json.dumps(good) + "\n" + '{"schema": "edgeconv.matrix-cell/1", "key": "b')
    f = ResultsFile(path)
    assert list(f.read()) == ["a" * 64]
    f.begin([good])
    assert f.append({**good, "key": "c" * 64}) is True
    assert f.append({**good, "key": "c" * 64}) is False and f.append(good) is False
    f.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a" * 64, "c" * 64]


def test_index_escapes_everything_and_links_only_inside(tmp_path):
    rec = {"key": "k" * 64, "id": "m/t/p", "status": "error", "exit_code": 2, "output": None,
           "error": "<script>alert(1)</script> & \"x\"", "placement": {"host": "<b>h</b>"},
           "cell": {"model": "m", "target": "t", "precision": "p", "board": None}, "report": None}
    page = index_html.render([rec], models=["m", "m<i>"], columns=["t/p"], title="<title>", out=tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>h</b>" not in page
    assert "<title><title>" not in page and "m&lt;i&gt;" in page


# -- running --------------------------------------------------------------------------------------------------------
def test_a_failing_cell_never_stops_the_others_and_a_rerun_converts_nothing(folder, monkeypatch):
    """Two models, one with verification data that does not fit it: its cell errors (exit 2), the other passes,
    the matrix exits with the worst code. The run starts in a folder holding a ``numpy.py`` that would leave a mark
    if a worker imported it (workers never start in the user's folder). A second run converts nothing."""
    with np.load(folder / "digits_test.npz") as d:
        np.savez(folder / "wrong.npz", input=np.zeros((4, 3, 5, 5), np.float32), labels=d["labels"][:4])
    mark = folder / "imported-from-cwd"
    (folder / "numpy.py").write_text(f"open({str(mark)!r}, 'w').close()\nraise ImportError('not numpy')\n")
    spec = write_spec(folder, """\
        models:
          - {name: good, source: digits.onnx, data: digits_test.npz}
          - {name: bad, source: digits.onnx, data: wrong.npz}
        targets: [onnxruntime]
        precisions: [fp32]
        runs: 5
    """)
    monkeypatch.chdir(folder)
    res = run_cli("matrix", str(spec), "-o", "out", "--workers", "2")
    assert res.exit_code == 2, res.output
    assert not mark.exists()
    lines = (folder / "out" / "results.jsonl").read_text().splitlines()
    recs = {r["id"]: r for r in map(json.loads, lines)}
    assert len(lines) == 2 and set(recs) == {"good/onnxruntime/fp32", "bad/onnxruntime/fp32"}
    good, bad = recs["good/onnxruntime/fp32"], recs["bad/onnxruntime/fp32"]
    assert good["status"] == "pass" and good["exit_code"] == 0 and good["report"]["schema"] == "edgeconv.report/1"
    assert good["report"]["accuracy"]["drop_pp"] == 0 and good["placement"]["backend"] == "local"
    assert good["placement"]["pid"] != os.getpid()
    assert (folder / "out" / good["output"] / "report.json").is_file()
    assert bad["status"] == "error" and bad["exit_code"] == 2 and bad["report"] is None and "wrong.npz" in bad["error"]
    page = (folder / "out" / "index.html").read_text()
    assert 'href="cells/good/onnxruntime-fp32/report.json"' in page and "wrong.npz" in page
    again = run_cli("matrix", str(spec), "-o", "out", "--workers", "2")
    assert again.exit_code == 2 and "ran 0, kept 2 unchanged" in again.stdout
    assert sorted((folder / "out" / "results.jsonl").read_text().splitlines()) == sorted(lines)
    rerun = run_cli("matrix", str(spec), "-o", "out", "--rerun-failed")
    assert rerun.exit_code == 2 and "ran 1, kept 1 unchanged" in rerun.stdout


class KillFirstWorker(Progress):
    """SIGKILL the first worker that starts a cell: a worker lost to the OOM killer or a crash."""

    def __init__(self) -> None:
        super().__init__(live=False)
        self.killed: list[int] = []

    def started(self, cell_id, where, event=None):
        super().started(cell_id, where, event)
        if not self.killed:
            self.killed.append(event["pid"])
            os.kill(event["pid"], signal.SIGKILL)


def test_a_dead_worker_loses_no_cell(folder, monkeypatch, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr("tempfile.tempdir", str(tmp))  # the pool's scratch folder goes here,
    monkeypatch.setenv("TMPDIR", str(tmp))  # and the workers' temporary folders would, but for the pool's scratch
    spec = load_spec(write_spec(folder, MODEL + "targets: [onnxruntime]\nprecisions: [fp32, int8]\nruns: 5\n"))
    progress = KillFirstWorker()
    outcome = run_matrix(spec, folder / "out", backend=LocalBackend(2), progress=progress)
    assert not list(tmp.iterdir())  # what the killed worker left in its temporary folders went with the pool's
    assert progress.killed
    lines = (folder / "out" / "results.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in recs) == ["digits/onnxruntime/fp32", "digits/onnxruntime/int8"]
    assert all(r["status"] == "pass" for r in recs), [r["error"] for r in recs]
    assert progress.killed[0] not in {r["placement"]["pid"] for r in recs}  # the cell it ran was run again
    assert outcome.exit_code == 0


class InterruptAfterFirst(Progress):
    def finished(self, rec):
        super().finished(rec)
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_cleanly_and_the_next_run_continues(folder):
    import psutil

    text = MODEL + "targets: [onnxruntime]\nprecisions: [fp32, int8, int8-dynamic]\nruns: 5\n"
    spec = load_spec(write_spec(folder, text))
    out = folder / "out"
    with pytest.raises(KeyboardInterrupt):
        run_matrix(spec, out, backend=LocalBackend(1), progress=InterruptAfterFirst(live=False))
    lines = (out / "results.jsonl").read_text().splitlines()
    assert 1 <= len(lines) < 3 and all(json.loads(line)["status"] == "pass" for line in lines)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith((".index-", ".results-"))]
    assert not [c for c in psutil.Process().children(recursive=True) if c.is_running()
                and c.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(c.cmdline())]
    outcome = run_matrix(spec, out, backend=LocalBackend(1))
    assert outcome.kept == len(lines) and outcome.ran == 3 - len(lines) and outcome.exit_code == 0
    assert sorted(json.loads(x)["id"] for x in (out / "results.jsonl").read_text().splitlines()) == sorted(
        c.id for c in cells_mod.plan_cells(spec).cells)


def test_live_table_shows_each_cell_and_where_it_runs():
    import io

    stream = io.StringIO()
    p = Progress(live=True, stream=stream)
    rec = {"key": "k" * 64, "id": "digits/onnxruntime/int8", "status": "fail", "exit_code": 1, "error": None,
           "seconds": 1.5, "placement": {"host": "hostA"}, "cell": {"model": "digits"},
           "report": {"artifact": {"size_bytes": 68_000}, "latency_ms": {"p50": 0.25}, "accuracy": {"drop_pp": 1.5},
                      "verdict": {"status": "fail", "reason": "budget"}}}
    p.begin(["digits/onnxruntime/fp32", "digits/onnxruntime/int8"], {}, "local")
    p.started("digits/onnxruntime/int8", "hostA pid 7", {"pid": 7})
    p.finished(rec)
    p.stop()
    text = stream.getvalue()
    assert "1/2 done" in text and "digits/onnxruntime/fp32" in text and "queued" in text
    assert "fail" in text and "68.0 KB" in text and "0.250" in text and "+1.50" in text and "hostA" in text
