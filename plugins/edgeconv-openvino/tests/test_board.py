"""The OpenVINO board half (edgeconv_openvino/board.py, docs/boards.md): run as a file in an isolated Python, the way
the board agent imports it from its cache, on the digits CNN converted to an fp32 IR; its outputs against the host's
OVRunner on the same feed, what its ``info`` says, that it imports nothing from edgeconv, and that the manifest's
runner settings apply. Last, the real path: an SSH server on 127.0.0.1 (tests/boards_testutil.py) whose board is a
separate Python environment holding only numpy and openvino (``board-venv-openvino``, not the shared loopback board's
environment), with ``convert(place=...)``."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeconv
import edgeconv_openvino.board as board
import openvino
from edgeconv.demo import sample_files
from edgeconv_openvino.runner import OVRunner, load_ir

ROOT = Path(__file__).resolve().parents[3]
HALF = Path(board.__file__)
BOARD_PINS = ("numpy==2.4.6", f"openvino=={openvino.__version__.split('-')[0]}")  # the host's builds
OV_VERSION = openvino.__version__.split("-")[0]


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    """The digits CNN as an fp32 IR: (xml path, manifest, a feed of 8 test samples)."""
    sample = sample_files()
    out = tmp_path_factory.mktemp("ov-board") / "fp32"
    r = edgeconv.convert(str(sample["model"]), "openvino", precision="fp32", data=str(sample["test"]), output=out,
                         runs=5)
    assert r.exit_code == 0, r.report["verdict"]
    manifest = json.loads((out / "manifest.json").read_text())
    with np.load(sample["test"]) as z:
        feed = {"input": z["input"][:8].astype(np.float32)}
    return out / manifest["artifact"][0], manifest, feed


def host_run(xml: Path, feed: dict, options: dict) -> tuple[dict, dict]:
    """(outputs, info) of the host's OVRunner on the same IR and feed."""
    runner = OVRunner(load_ir(xml), **options)
    runner.activate()
    try:
        return runner.infer(feed), runner.info
    finally:
        runner.deactivate()


def board_cache_like(xml: Path, root: Path) -> Path:
    """The artifact laid out as the agent lays it out: content-addressed blobs, and a run folder of symlinks named like
    the artifact's files (so the .bin is found beside the .xml only through the links)."""
    blobs, run = root / "blobs", root / "runs" / "1"
    blobs.mkdir(parents=True)
    run.mkdir(parents=True)
    for f in (xml, xml.with_suffix(".bin")):
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        (blobs / sha).write_bytes(f.read_bytes())
        (run / f.name).symlink_to(blobs / sha)
    return run / xml.name


def test_the_half_in_an_isolated_python_matches_the_host_runner(ir, tmp_path):
    xml, manifest, feed = ir
    options = manifest["runner_options"]
    assert options["precision_hint"] == "f32" and options["device"] == "CPU"
    main = board_cache_like(xml, tmp_path / "cache")
    np.savez(tmp_path / "in.npz", **feed)
    driver = (
        "import importlib.util, json, sys\n"
        "import numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('edgeconv_board_half_x', {str(HALF)!r})\n"
        "half = importlib.util.module_from_spec(spec); spec.loader.exec_module(half)\n"
        "for m in half.MODULES: __import__(m)\n"
        f"s = half.load({str(main)!r}, json.loads({json.dumps(options)!r}))\n"
        "with np.load('in.npz') as z: feed = {k: z[k] for k in z.files}\n"
        "np.savez('out.npz', **s.infer(feed)); s.close()\n"
        "import threading; print('THREADS=%d' % threading.active_count())\n"
        "print(json.dumps(s.info))\n"
        "print('EDGECONV=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0].startswith('edgeconv'))))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", driver], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "EDGECONV=", lines[-1]  # the half (and openvino) pulled in nothing of edgeconv
    info = json.loads(lines[-2])
    # no telemetry sender thread (openvino's import-time usage event forks a process that would hang a board's agent)
    assert lines[-3] == "THREADS=1", lines[-3]
    assert info["runtime"] == f"openvino {OV_VERSION}"
    assert info["device"] == "CPU" and info["device_name"]
    assert info["precision_hint"] == "f32" == info["precision_hint_requested"]
    assert info["performance_hint"] == "LATENCY" and info["ignored_options"] == []
    with np.load(tmp_path / "out.npz") as z:
        got = {k: z[k] for k in z.files}
    want, host_info = host_run(xml, feed, options)
    assert set(info["layer_precisions"]) == {"f32"} and info["layer_precisions"] == host_info["layer_precisions"]
    for key in ("runtime", "device_name", "execution_devices", "precision_hint", "performance_hint", "streams", "threads"):
        assert info[key] == host_info[key], key
    assert sorted(got) == sorted(want) == [t["name"] for t in manifest["io"]["outputs"]] == ["logits"]
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=0, atol=1e-5)
    assert got["logits"].shape == (8, 10) and np.abs(got["logits"]).max() > 1.0  # real logits, not zeros


def test_runner_settings_apply_as_on_the_host(ir, tmp_path):
    xml, manifest, feed = ir
    options = {**manifest["runner_options"], "inference_num_threads": 2, "threads": 1, "num_streams": "1",
               "performance_hint": "throughput", "output_names": ["scores"], "tensor_names": {"x": "y"}}
    s = board.load(str(xml), options)
    try:
        info = s.info
        assert info["threads"] == 1  # a run's threads wins over the artifact's inference_num_threads, as on the host
        assert info["streams"] == 1 and info["performance_hint"] == "THROUGHPUT"
        assert info["ignored_options"] == ["tensor_names"]
        got = s.infer(feed)
    finally:
        s.close()
    want = host_run(xml, feed, {**manifest["runner_options"], "threads": 1})[0]
    assert list(got) == ["scores"]
    np.testing.assert_allclose(got["scores"], want["logits"], rtol=0, atol=1e-5)
    # bf16 asked for on a CPU that has it is what the compiled model reports (this host: AVX512-BF16)
    caps = {c.upper() for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    if "BF16" in caps:
        s = board.load(str(xml), {**manifest["runner_options"], "precision_hint": "bf16"})
        assert s.info["precision_hint"] == "bf16"
        s.close()


def test_a_folder_holding_one_ir_and_the_plain_load(ir, tmp_path):
    xml, manifest, feed = ir
    folder = tmp_path / "ir"
    folder.mkdir()
    for f in (xml, xml.with_suffix(".bin")):
        (folder / f.name).write_bytes(f.read_bytes())
    s = board.load(str(folder), {"plain": True})
    assert s.info.get("plain_load") is True and s.info["precision_hint_requested"] is None
    assert list(s.infer(feed)) == ["logits"]
    s.close()


def test_bad_settings_and_a_missing_device_are_clear_errors(ir, tmp_path):
    xml, manifest, feed = ir
    with pytest.raises(RuntimeError, match=r"OpenVINO device NPU\.7 is not available on this board \(available: .*CPU"):
        board.load(str(xml), {"device": "NPU.7"})
    with pytest.raises(ValueError, match="output_names has 2 names, the IR has 1 outputs"):
        board.load(str(xml), {"output_names": ["a", "b"]})
    (tmp_path / "a.xml").write_bytes(xml.read_bytes())
    (tmp_path / "b.xml").write_bytes(xml.read_bytes())
    with pytest.raises(ValueError, match="holds 2 .xml files, not one"):
        board.load(str(tmp_path), {})


def test_the_half_is_self_contained_python38():
    """What goes to a board imports only the standard library, numpy and openvino, in Python 3.8 syntax."""
    tree = ast.parse(HALF.read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"numpy", "openvino"}, imported
    assert "edgeconv" not in HALF.read_text().replace("edgeconv_openvino.runner", "").replace(
        "edgeconv.places.agent", "").replace("edgeconv's", "").split('"""', 2)[2]  # not in the code, docstring aside
    assert board.MODULES == ("openvino",)
    assert os.path.basename(board.__file__) == "board.py"


# -- through the real board path: SSH on 127.0.0.1, a board environment with only numpy + openvino -------------------
@pytest.fixture(scope="module")
def ov_board(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    import boards_testutil as bt

    py = bt.board_python("board-venv-openvino", BOARD_PINS)
    probe = subprocess.run([str(py), "-c", "import edgeconv"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'edgeconv'" in probe.stderr, "the board must not have edgeconv"
    server = bt.LoopServer(tmp_path_factory.mktemp("ov-loopserver"), py).start()
    config = tmp_path_factory.mktemp("ov-config")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("EDGECONV_BOARDS", str(config / "boards.toml"))
            mp.setenv("HOME", str(config / "home"))
            mp.delenv("SSH_AUTH_SOCK", raising=False)
            yield bt.LoopBoard(server, "ovloop"), py
    finally:
        server.stop()


def test_convert_for_openvino_verified_on_a_board(ov_board, tmp_path):
    loop, py = ov_board
    sample = sample_files()
    r = edgeconv.convert(str(sample["model"]), "openvino", precision="fp32", data=str(sample["test"]),
                         output=tmp_path / "out", place="ovloop", runs=10, memory=False)
    assert r.exit_code == 0, r.report["verdict"]
    art = r.report["runtime"]["artifact"]
    assert art["where"] == "board" and art["board"] == "ovloop"
    assert art["board_python"] == str(py) != sys.executable and art["board_pid"] != os.getpid()
    assert art["timed_by"] == {"pid": art["board_pid"], "python": str(py)}  # the latency loop ran there
    assert art["runtime"] == f"openvino {OV_VERSION}" and art["device"] == "CPU"
    assert art["precision_hint"] == "f32" == art["precision_hint_requested"]
    # the .xml and its .bin (and the half) went to the board's cache, under their sha256
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    blobs = {p.name for p in (loop.server.cache / "blobs").iterdir()}
    assert set(manifest["files"].values()) <= blobs
    assert art["transfer"]["files_sent"] == 3, art["transfer"]
    # a second run (verify of the same artifact on the board) sends nothing
    again = edgeconv.verify(str(sample["model"]), tmp_path / "out", place="ovloop", data=str(sample["test"]),
                            runs=5, memory=False)
    assert again.exit_code == 0
    assert again.report["runtime"]["artifact"]["transfer"]["files_sent"] == 0
