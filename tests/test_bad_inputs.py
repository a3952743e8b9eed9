"""Bad inputs through the real ``edgeconv`` command, as a user would type it.

Each case: the documented exit code (2 bad input, 4 toolchain failure or pre-check
refusal, 1 verification failed), one line on stderr starting ``edgeconv: error:`` that
names the offending file, no traceback, nothing left beside the output (no output
folder, no ``.tmp-`` staging folder, no lock), and every input file byte-for-byte as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from helpers_onnx import (  # noqa: E402
    image_classifier,
    sample_input,
    save_external,
    save_model,
    save_with_external_location,
    sha256,
    unknown_domain_model,
)

EDGECONV = Path(sys.executable).parent / "edgeconv"
OUT = Path("outs") / "result"  # relative to the case folder; outs/ exists and is empty


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGECONV_DEBUG", "PYTHONWARNINGS")}  # as a user runs it
    return subprocess.run([str(EDGECONV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Case:
    build: Callable[[Path], list[str]]  # writes the files, returns the arguments after `convert`
    code: int
    words: tuple[str, ...]  # each must appear in the stderr line
    names: str | None = None  # the file the message must name (relative to the case folder)
    keep: tuple[str, ...] = field(default=())  # inputs (besides the model) that must stay unchanged


def _good(tmp: Path, name: str = "model.onnx", **kw) -> str:
    save_model(image_classifier(**kw), tmp / name)
    return name


def _bytes(name: str, content: Callable[[], bytes]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content())
        return [name]

    return build


def _valid_bytes() -> bytes:
    return image_classifier().SerializeToString()


def _dir(tmp: Path) -> list[str]:
    (tmp / "folder.onnx").mkdir()
    (tmp / "folder.onnx" / "model.onnx").write_bytes(_valid_bytes())
    return ["folder.onnx"]


def _external(location: str, setup: Callable[[Path], None] | None = None) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        save_with_external_location(image_classifier(), tmp / "m" / "model.onnx", location)
        if setup:
            setup(tmp)
        return ["m/model.onnx"]

    return build


def _outside(tmp: Path) -> None:  # the file exists: only the confinement refuses it
    (tmp / "outside.bin").write_bytes(b"\0" * 160)


def _symlink(tmp: Path) -> None:
    _outside(tmp)
    (tmp / "m" / "w.bin").symlink_to(tmp / "outside.bin")


def _short(tmp: Path) -> None:
    (tmp / "m" / "w.bin").write_bytes(b"\0" * 8)  # fc.weight needs 160 bytes


def _absolute(tmp: Path) -> list[str]:
    _outside(tmp)
    save_with_external_location(image_classifier(), tmp / "m" / "model.onnx", str(tmp / "outside.bin"))
    return ["m/model.onnx"]


def _with(extra: list[str], **kw) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        return [_good(tmp, **kw), *extra]

    return build


def _calib_wrong_shape(tmp: Path) -> list[str]:
    np.save(tmp / "calib.npy", np.zeros((4, 3, 8, 8), np.float32))
    return [_good(tmp), "-p", "int8", "--calib", "calib.npy"]


def _calib_empty_folder(tmp: Path) -> list[str]:
    (tmp / "calib").mkdir()
    (tmp / "calib" / "labels.txt").write_text("cat\ndog\n")
    return [_good(tmp), "-p", "int8", "--calib", "calib"]


def _calib_bad_image(tmp: Path) -> list[str]:
    (tmp / "calib").mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp / "calib" / "a.png")
    (tmp / "calib" / "b.jpg").write_bytes(b"not a jpeg")
    return [_good(tmp), "-p", "int8", "--calib", "calib"]


def _data_fewer_than_batch(tmp: Path) -> list[str]:
    np.save(tmp / "data.npy", sample_input(2))
    return [_good(tmp, batch=4), "--data", "data.npy", "--runs", "3", "--no-memory"]


def _existing_output(tmp: Path) -> list[str]:
    (tmp / OUT).mkdir()
    (tmp / OUT / "keep.txt").write_text("precious")
    return [_good(tmp)]


def _output_is_file(tmp: Path) -> list[str]:
    (tmp / OUT).write_text("a file, not a folder")
    return [_good(tmp)]


CASES: dict[str, Case] = {
    # the model file itself
    "empty-file": Case(_bytes("model.onnx", bytes), 2, ("is empty",), "model.onnx"),
    "random-bytes": Case(_bytes("model.onnx", lambda: np.random.default_rng(0).bytes(4096)), 2, ("not a valid ONNX",), "model.onnx"),
    "truncated": Case(_bytes("model.onnx", lambda: _valid_bytes()[: len(_valid_bytes()) // 2]), 2, ("not a valid ONNX",), "model.onnx"),
    "wrong-suffix": Case(_bytes("model.txt", _valid_bytes), 2, ("cannot tell the model format", ".txt", "--from"), "model.txt"),
    "directory": Case(_dir, 2, ("is a directory",), "folder.onnx"),
    "no-such-file": Case(lambda tmp: ["missing.onnx"], 2, ("no such file",), "missing.onnx"),
    # external data
    "external-outside": Case(_external("../outside.bin", _outside), 2, ("outside the model's folder", "../outside.bin"), "m/model.onnx"),
    "external-absolute": Case(_absolute, 2, ("absolute path",), "m/model.onnx"),
    "external-symlink-out": Case(_external("w.bin", _symlink), 2, ("outside the model's folder",), "m/model.onnx"),
    "external-missing": Case(_external("weights.bin"), 2, ("'weights.bin'", "is missing"), "m/model.onnx"),
    "external-too-short": Case(_external("w.bin", _short), 2, ("cannot read the external data",), "m/model.onnx"),
    "external-nul-byte": Case(_external("w\0.bin"), 2, ("invalid external data location",), "m/model.onnx"),
    "external-name-too-long": Case(_external("w" * 300), 2, ("invalid external data location",), "m/model.onnx"),
    # graph and shapes
    "unknown-domain-op": Case(lambda tmp: [save_model(unknown_domain_model(), tmp / "custom.onnx").name], 4,
                              ("precheck", "fancy (FancyOp)", "cannot run 1 node"), "custom.onnx"),
    "zero-dim": Case(lambda tmp: [_good(tmp, input_shape=[1, 3, 0, 16])], 2, ("zero-size", "[1,3,0,16]"), "model.onnx"),
    "negative-dim": Case(lambda tmp: [_good(tmp, input_shape=[1, 3, -2, 16])], 2, ("negative", "[1,3,-2,16]"), "model.onnx"),
    # -1 is the exporters' "dynamic" (paddle2onnx): an axis of its own, not an error (tests/test_import_regressions.py)
    "shape-contradicts": Case(_with(["--input-shape", "input:2,3,16,16"]), 2, ("contradicts", "[1,3,16,16]"), "model.onnx"),
    "shape-unknown-input": Case(_with(["--input-shape", "nope:1,3,16,16"]), 2, ("'nope'", "inputs are: input"), "model.onnx"),
    "shape-malformed": Case(_with(["--input-shape", "input:1,3,-1,16"]), 2, ("is not NAME:D1,D2",)),
    # data
    "calib-wrong-shape": Case(_calib_wrong_shape, 2, ("--calib", "[4,3,8,8]", "[1,3,16,16]"), "calib.npy", ("calib.npy",)),
    "calib-empty-folder": Case(_calib_empty_folder, 2, ("--calib", "no images"), "calib", ("calib",)),
    "calib-unreadable-image": Case(_calib_bad_image, 2, ("not a JPEG image",), "calib/b.jpg", ("calib",)),
    "int8-without-calib": Case(_with(["-p", "int8"]), 2, ("needs calibration data", "--calib"), "model.onnx"),
    "data-fewer-than-batch": Case(_data_fewer_than_batch, 2, ("--data", "fewer than the model's fixed batch size 4"), "data.npy", ("data.npy",)),
    # options
    "unknown-target": Case(_with(["--to", "onnxrutime"]), 2, ("unknown target 'onnxrutime'", "did you mean 'onnxruntime'")),
    "unknown-precision": Case(_with(["-p", "int4"]), 2, ("precision 'int4'", "fp32, fp16, int8")),
    "unknown-option": Case(_with(["-O", "per_chanel=1"]), 2, ("no option 'per_chanel'", "did you mean 'per_channel'")),
    "option-bad-value": Case(_with(["-O", "activation_type=int4"]), 2, ("activation_type", "uint8, int8")),
    # output
    "output-exists": Case(_existing_output, 2, ("exists", "--force"), str(OUT), (str(OUT),)),
    "output-is-file": Case(_output_is_file, 2, ("is a file",), str(OUT), (str(OUT),)),
}


@dataclass
class Ran:
    tmp: Path
    guarded: dict[Path, str]  # input file -> sha256 before the run
    outs_before: list[str]
    result: subprocess.CompletedProcess


def _run_case(case_id: str, tmp: Path) -> Ran:
    case = CASES[case_id]
    (tmp / OUT.parent).mkdir()
    args = case.build(tmp)
    guarded = {p: sha256(p) for p in (tmp / args[0], *(tmp / k for k in case.keep))}
    outs_before = sorted(p.name for p in (tmp / OUT.parent).iterdir())
    to = [] if "--to" in args else ["--to", "onnxruntime"]
    return Ran(tmp, guarded, outs_before, run(["convert", *args, *to, "-o", str(OUT)], tmp))


@pytest.fixture(scope="module")
def ran(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every selected case up front, a few at a time (each is one ~1-3 s CLI call)."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = [
        item.callspec.params["case_id"]
        for item in request.session.items
        if item.module is request.module and "case_id" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        futures = {c: pool.submit(_run_case, c, tmp_path_factory.mktemp(c)) for c in dict.fromkeys(wanted)}
        return {c: f.result() for c, f in futures.items()}


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(ran: dict[str, Ran], case_id: str) -> None:
    case, tmp, r = CASES[case_id], ran[case_id].tmp, ran[case_id].result
    assert r.returncode == case.code, (r.returncode, r.stderr, r.stdout[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and r.stderr.endswith("\n"), r.stderr
    line = lines[0]
    assert line.startswith("edgeconv: error: "), line
    assert "internal error" not in line, line
    if case.names:
        assert case.names in line, (case.names, line)
    for w in case.words:
        assert w in line, (w, line)
    # nothing written beside the output, the output itself untouched
    assert sorted(p.name for p in (tmp / OUT.parent).iterdir()) == ran[case_id].outs_before
    assert not list(tmp.rglob("*.tmp-*")) and not list(tmp.rglob("*.lock"))
    assert {p: sha256(p) for p in ran[case_id].guarded} == ran[case_id].guarded


def test_nan_weights_fail_verification(tmp_path: Path) -> None:
    """NaN in a Gemm's B: the conversion completes, verification fails (exit 1)."""
    model = save_model(image_classifier(nan_weights=True), tmp_path / "nan.onnx")
    before = sha256(model)
    (tmp_path / "outs").mkdir()
    r = run(["convert", "nan.onnx", "--to", "onnxruntime", "-o", str(OUT), "--runs", "3", "--no-memory"], tmp_path)
    assert r.returncode == 1, (r.stderr, r.stdout[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    assert "FAIL" in r.stdout and "NaN" in r.stdout
    assert r.stderr == ""  # a verdict, not an error
    # the artifact and its report are kept (that is how a user reads why it failed)
    out = tmp_path / OUT
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "nan.onnx", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["status"] == "fail" and "NaN" in report["verdict"]["reason"]
    assert [p.name for p in (tmp_path / "outs").iterdir()] == ["result"]  # no staging, no lock
    assert sha256(model) == before


def test_good_models_convert(tmp_path: Path) -> None:
    """The control: the same harness passes a valid model, with its weights in external data."""
    save_external(image_classifier(), tmp_path / "ext" / "model.onnx")
    before = sha256(tmp_path / "ext")
    (tmp_path / "outs").mkdir()
    r = run(["convert", "ext/model.onnx", "--to", "onnxruntime", "-o", str(OUT), "--runs", "3", "--no-memory"], tmp_path)
    assert r.returncode == 0, (r.stderr, r.stdout[-2000:])
    assert r.stderr == ""
    assert (tmp_path / OUT / "model.onnx").is_file() and (tmp_path / OUT / "report.json").is_file()
    assert [p.name for p in (tmp_path / "outs").iterdir()] == ["result"]
    assert sha256(tmp_path / "ext") == before


def test_debug_prints_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    r = run(["--debug", "convert", "model.onnx", "-o", str(OUT)], tmp_path)
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert "BadInput" in r.stderr
    assert r.stderr.splitlines()[-1] == "edgeconv: error: model.onnx: import: is empty (0 bytes)"
    assert not (tmp_path / OUT).exists()


def test_unreadable_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """No read permission (cannot be set up for root, so simulated in-process): exit 2, not 4."""
    import signal

    import onnx

    from edgeconv import cli

    model = save_model(image_classifier(), tmp_path / "locked.onnx")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(model))

    monkeypatch.setattr(onnx, "load", denied)
    monkeypatch.setitem(cli.STATE, "debug", False)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(["convert", str(model), "-o", str(tmp_path / "out")])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == f"edgeconv: error: {model}: import: cannot be read (Permission denied)\n"
    assert not (tmp_path / "out").exists()
