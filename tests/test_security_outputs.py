"""Issue #16, the classes outside the model importers: child processes, manifests, output safety, numbers, the
terminal, clean errors, broken plugins. Each test failed on the code before the fix (8fc35da)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeconv.demo import sample_files

EDGECONV = str(Path(sys.executable).with_name("edgeconv"))
ENV = {**os.environ}


def run(*args: str, cwd: Path | str | None = None, env: dict | None = None, timeout: float = 600):
    return subprocess.run([EDGECONV, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**ENV, **(env or {})})


def one_line_error(proc, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeconv: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def converted(tmp_path, digits):
    """A fresh onnxruntime artifact of the digits sample, and a private copy of its source."""
    src = tmp_path / "digits.onnx"
    shutil.copy(digits["model"], src)
    out = tmp_path / "out"
    proc = run("convert", str(src), "-o", str(out), "--runs", "3", "--no-memory")
    assert proc.returncode == 0, proc.stderr
    return src, out


# -- 4. child processes are isolated from the user's folder ----------------------------------------------------------
def test_the_memory_probe_imports_nothing_from_the_working_folder(tmp_path, digits):
    for name in ("json.py", "subprocess.py", "numpy.py"):
        (tmp_path / name).write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write({name!r})\n")
    proc = run("bench", str(digits["model"]), "--runs", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "PWNED").exists()
    assert json.loads(proc.stdout)["peak_rss_bytes"] > 0  # the probe ran (it failed silently when hijacked)


def test_no_plugin_is_read_from_the_working_folder(tmp_path, monkeypatch):
    info = tmp_path / "evil-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[edgeconv]\nevil = evilmod\n")
    (info / "METADATA").write_text("Name: evil\n\n")
    from edgeconv import plugins

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    assert "evil" not in [ep.name for ep in plugins.entry_points("edgeconv")]


def test_toolchain_commands_run_isolated(tmp_path):
    from edgeconv import worker

    (tmp_path / "json.py").write_text("raise SystemExit('hijacked')\n")
    done = worker.run(worker.python_argv(args=["-c", "import json, os, sys; print(json.dumps([os.getcwd(), sys.flags.isolated]))"]),
                      timeout=60, env={"PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": str(tmp_path / "json.py")})
    cwd, isolated = json.loads(done.stdout)
    assert done.ok and isolated == 1 and cwd != str(tmp_path) and not Path(cwd).exists()  # a scratch folder, removed


# -- 5. manifests are input too --------------------------------------------------------------------------------------
def _edit_manifest(out: Path, **changes) -> None:
    m = json.loads((out / "manifest.json").read_text())
    m.update(changes)
    (out / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("options, why", [
    ({"providers": ["CUDAExecutionProvider"], "graph_optimization": "all"}, "runner option 'providers'"),
    ({"graph_optimization": ["all"]}, "runner option 'graph_optimization' is list"),
    ({"intra_op_threads": "many"}, "runner option 'intra_op_threads' is str"),
])
def test_manifest_runner_options_are_allow_listed_and_typed(converted, options, why):
    src, out = converted
    _edit_manifest(out, runner_options=options)
    assert why in one_line_error(run("bench", str(out), "--runs", "2"))
    assert why in one_line_error(run("verify", str(src), str(out), "--runs", "2"))


def test_a_changed_artifact_file_is_refused_by_verify_bench_and_report(converted):
    src, out = converted
    with open(out / "digits.onnx", "ab") as fh:
        fh.write(b"\0")
    for args in (("verify", str(src), str(out)), ("bench", str(out)), ("report", str(out), "-o", str(out.parent / "r.html"))):
        assert "changed since edgeconv made it" in one_line_error(run(*args))


def test_verify_checks_the_source_is_the_one_converted(converted, digits):
    _src, out = converted
    other = out.parent / "other.onnx"
    import onnx

    m = onnx.load(str(digits["model"]))
    m.producer_name = "someone else"
    onnx.save(m, str(other))
    assert "is not the source this artifact was made from" in one_line_error(run("verify", str(other), str(out)))


# -- 6. the lock belongs to its holder -------------------------------------------------------------------------------
def test_a_refused_run_leaves_the_holders_lock(tmp_path, digits):
    out = tmp_path / "o"
    lock = tmp_path / ".o.lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run("convert", str(digits["model"]), "-o", str(out))
        assert "another edgeconv run is writing this output" in one_line_error(refused)
        assert lock.exists(), "the refused run removed the lock of the run holding it"
        # a third run is refused too (it used to take the output: the lock was gone)
        assert "another edgeconv run" in one_line_error(run("convert", str(digits["model"]), "-o", str(out)))
    assert not out.exists()


# -- 7. --force never deletes an input --------------------------------------------------------------------------------
def test_force_refuses_an_output_that_holds_or_is_an_input(tmp_path, digits):
    model = tmp_path / "m.onnx"
    shutil.copy(digits["model"], model)
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(digits["calib"], calib / "c.npz")
    for args in (("-o", ".", "--force"), ("-o", str(tmp_path), "--force"),
                 ("-p", "int8", "--calib", str(calib / "c.npz"), "-o", str(calib), "--force")):
        proc = run("convert", "m.onnx", *args, cwd=tmp_path)
        assert "input" in one_line_error(proc)
    assert model.read_bytes() == Path(digits["model"]).read_bytes() and (calib / "c.npz").is_file()


def test_force_replaces_only_an_edgeconv_output(tmp_path, digits):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    proc = run("convert", str(digits["model"]), "-o", str(mine), "--force")
    assert "not an edgeconv output" in one_line_error(proc)
    assert (mine / "thesis.tex").read_text() == "years of work"


# -- 8. toolchain remove deletes only what edgeconv built ------------------------------------------------------------
class _DeclaresFaketc:
    """A plugin that declares a toolchain environment (the remove command acts only on declared ones)."""

    from edgeconv.plugin import hookimpl

    @hookimpl
    def register_toolchains(self, register):
        from edgeconv.plugin import Toolchain

        register(Toolchain(name="faketc", title="Fake SDK", python="3.11", requirements=("six==1.16.0",)))


def test_toolchain_remove_refuses_a_folder_edgeconv_did_not_build(tmp_path, monkeypatch, fresh_plugins, cli):
    fresh_plugins.register_plugin(_DeclaresFaketc(), "faketc-decl")
    root = tmp_path / "tc"
    (root / "faketc").mkdir(parents=True)
    (root / "faketc" / "precious.txt").write_text("mine")
    target = tmp_path / "elsewhere"
    target.mkdir()
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(root))
    res = cli("toolchain", "remove", "faketc")
    assert res.exit_code == 2 and "edgeconv did not build it" in res.output, res.output
    assert (root / "faketc" / "precious.txt").exists()
    import shutil as _sh

    _sh.rmtree(root / "faketc")
    (root / "faketc").symlink_to(target)
    res = cli("toolchain", "remove", "faketc")
    assert res.exit_code == 2 and "symbolic link" in res.output, res.output
    assert target.is_dir() and (root / "faketc").is_symlink()
    assert not list(root.glob(".faketc*"))  # no lock or staging left


# -- 9. no file replaced without --force ------------------------------------------------------------------------------
def test_report_never_overwrites_an_existing_file_or_an_input(tmp_path, converted):
    src, out = converted
    before = src.read_bytes()
    proc = run("convert", str(src), "-o", str(tmp_path / "o2"), "--report", str(src))
    assert "input" in one_line_error(proc) and src.read_bytes() == before
    page = tmp_path / "page.html"
    page.write_text("keep me")
    assert "exists" in one_line_error(run("convert", str(src), "-o", str(tmp_path / "o3"), "--report", str(page)))
    assert page.read_text() == "keep me" and not (tmp_path / "o3").exists()
    report = out / "report.json"
    assert "input" in one_line_error(run("report", str(report), "-o", str(report)))
    html = tmp_path / "x.html"
    html.write_text(report.read_text())
    assert "input" in one_line_error(run("report", str(html)))  # the default output is X.html itself
    assert json.loads(html.read_text())["schema"] == "edgeconv.report/1"


def test_demo_output_needs_force_over_existing_result_folders(tmp_path):
    (tmp_path / "digits-onnxruntime-fp32").mkdir()
    (tmp_path / "digits-onnxruntime-fp32" / "keep.txt").write_text("x")
    proc = run("demo", "-o", str(tmp_path), "--runs", "2")
    assert "give --force" in one_line_error(proc)
    assert (tmp_path / "digits-onnxruntime-fp32" / "keep.txt").exists()


# -- 10. numbers are bounded --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("--threads", "100000"), ("--threads", "-1"), ("--seed", "-1"), ("--runs", "-5"),
                                  ("--input-shape", "input:100000000,1,8,8")])
def test_numbers_out_of_range_are_bad_usage_and_leave_nothing(tmp_path, digits, args):
    out = tmp_path / "o"
    proc = run("convert", str(digits["model"]), "-o", str(out), *args, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no lock, staging or scratch beside it


def test_the_api_bounds_numbers_too(tmp_path, digits):
    import edgeconv
    from edgeconv.errors import BadInput

    for kwargs in ({"threads": 100000}, {"seed": -1}, {"runs": 0}, {"verify_samples": 0}):
        with pytest.raises(BadInput):
            edgeconv.convert(str(digits["model"]), output=tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


# -- 11. names from a model are data in the terminal ----------------------------------------------------------------
def _named_model(path: Path, output_name: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], [output_name], name="\x1b[2J\x1b[H[link=http://x]n[/link]")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("name", ["[/]", "\x1b[2J\x1b[1;1HALL CHECKS PASSED\x1b[0m", "[link=http://evil]y[/link]",
                                  "[bold red]x"])
def test_names_never_break_or_hijack_the_terminal(tmp_path, name):
    model = tmp_path / "m.onnx"
    _named_model(model, name)
    proc = run("convert", str(model), "-o", str(tmp_path / "o"), "--runs", "2", "--no-memory")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    if name.startswith("[link"):
        assert "[link=http://evil]" in proc.stdout  # shown as text, not rendered as a link
    inspect = run("inspect", str(model))
    assert inspect.returncode == 0 and "\x1b" not in inspect.stdout + inspect.stderr


def test_error_messages_strip_control_characters(tmp_path):
    bad = tmp_path / "x\x1b[2J.onnx"
    bad.write_bytes(b"not onnx")
    line = one_line_error(run("inspect", str(bad)))
    assert "\x1b" not in line and "\\x1b" in line


# -- 12. bad input is exit 2, not an internal error ----------------------------------------------------------------
def test_hard_linked_external_data_loads(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model),
              save_as_external_data=True, location="m.data", size_threshold=0)
    os.replace(tmp_path / "m.data", tmp_path / "blob")  # a DVC-style cache links its blobs into the workspace
    os.link(tmp_path / "blob", tmp_path / "m.data")
    proc = run("convert", str(model), "-o", str(tmp_path / "o"), "--runs", "2", "--no-memory")
    assert proc.returncode == 0, proc.stderr


def test_a_malformed_report_is_bad_input(tmp_path):
    doc = tmp_path / "r.json"
    doc.write_text(json.dumps({"schema": "edgeconv.report/1", "target": "x", "verdict": {"status": "pass"},
                               "fidelity": "not a list", "source": 3}))
    one_line_error(run("report", str(doc), "-o", str(tmp_path / "r.html")))
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("labels", [np.array(3), np.array(["a"] * 540), np.full(540, np.nan)])
def test_labels_that_cannot_be_classes_are_refused(tmp_path, digits, labels):
    with np.load(digits["test"]) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["labels"] = labels
    data = tmp_path / "d.npz"
    np.savez(data, **arrays)
    assert "'labels'" in one_line_error(run("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--data",
                                            str(data), "--max-accuracy-drop", "1"))


def test_disabling_the_built_in_stage_runner_still_converts(tmp_path, digits):
    env = {"EDGECONV_DISABLE_PLUGINS": ",".join(filter(None, [ENV.get("EDGECONV_DISABLE_PLUGINS"), "edgeconv.builtins.stages"]))}
    proc = run("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--runs", "2", "--no-memory", env=env)
    assert proc.returncode == 0, proc.stderr


# -- 13. calibration images are opened by their suffix, not by content ------------------------------------------------
def test_a_postscript_file_named_png_never_reaches_ghostscript(tmp_path, monkeypatch):
    """Pillow identifies an EPS by content and renders it with Ghostscript (``gs``) when loaded; a calibration
    folder is read only as the formats the suffixes name, so the EPS plugin is never asked."""
    from PIL import EpsImagePlugin, Image

    from edgeconv.data import load_dataset
    from edgeconv.errors import BadInput
    from edgeconv.model import IOContract, TensorSpec

    asked = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: asked.append(a) or (_ for _ in ()).throw(
        RuntimeError("Ghostscript started")))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    folder = tmp_path / "calib"
    folder.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto showpage\n%%EOF\n")
    io = IOContract(inputs=(TensorSpec("x", (1, 3, 8, 8), "float32"),), outputs=(TensorSpec("y", (1, 2), "float32"),))
    with pytest.raises(BadInput) as e:
        load_dataset(folder, io, what="--calib")
    assert Path(e.value.file).name == "b.png" and "not a PNG image" in str(e.value)
    assert not asked


# -- 14. one broken plugin does not take the CLI down ----------------------------------------------------------------
BROKEN = {
    "raises_commands": "import edgeconv.plugin as p\n@p.hookimpl\ndef register_commands(app):\n    raise RuntimeError('boom')\n",
    "exits": "import sys\nsys.exit(3)\n",
    "interrupts": "raise KeyboardInterrupt\n",
    "hangs": "import time\ntime.sleep(60)\n",
    "prints": "print('noise on stdout')\nimport edgeconv.plugin as p\n@p.hookimpl\ndef register_targets(register):\n    print('more noise')\n",
    "old_api": "EDGECONV_API = '0.9'\n",
}


@pytest.fixture
def broken_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    for name, code in BROKEN.items():
        (site / f"broken_{name}.py").write_text(code)
        info = site / f"edgeconv_broken_{name}-0.1.dist-info"
        info.mkdir()
        (info / "entry_points.txt").write_text(f"[edgeconv]\nbroken_{name} = broken_{name}\n")
        (info / "METADATA").write_text(f"Name: edgeconv-broken-{name}\nVersion: 0.1\n\n")
    return site


def test_broken_plugins_are_recorded_and_the_rest_works(broken_site, tmp_path):
    env = {"PYTHONPATH": str(broken_site), "EDGECONV_PLUGIN_IMPORT_TIMEOUT": "2"}
    proc = run("plugins", "--json", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    items = {p["name"]: p for p in json.loads(proc.stdout)}  # stdout is JSON: the prints went to stderr
    for name in BROKEN:
        if name == "prints":
            assert not items[f"broken_{name}"]["broken"]
            continue
        assert items[f"broken_{name}"]["broken"], name
    assert "0.9" in items["broken_old_api"]["error"]
    assert "did not finish within 2 s" in items["broken_hangs"]["error"]
    targets = run("targets", "--json", env=env, timeout=120)
    assert targets.returncode == 0 and json.loads(targets.stdout)["schema"] == "edgeconv.targets/1"


# -- 15. third-party noise stays off the terminal --------------------------------------------------------------------
def test_a_conversion_prints_only_edgeconvs_lines(tmp_path, digits):
    proc = run("convert", str(digits["model"]), "-p", "int8", "--calib", str(digits["calib"]), "-o",
               str(tmp_path / "o"), "--runs", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    assert proc.stderr.strip() == "", proc.stderr  # the quantizer's advice and onnxruntime's log lines are gone


# -- 16. the verdict is never cut ------------------------------------------------------------------------------------
def test_narrow_terminal_never_truncates_the_verdict(tmp_path, digits):
    from rich.console import Console

    from edgeconv.cli.render import render_demo

    report = {"target": "onnxruntime", "precision": "int8", "artifact": {"size_bytes": 66923},
              "latency_ms": {"p50": 0.031}, "accuracy": {"artifact": 0.9907, "drop_pp": 0.0},
              "verdict": {"status": "fail", "reason": "output logits: cosine 0.9 < 0.98"}}
    for width in (60, 80):
        con = Console(width=width, record=True, force_terminal=False)
        render_demo([report], con)
        text = con.export_text()
        assert "…" not in text and "fail" in text and "99.07" in text
