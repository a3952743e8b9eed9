"""No network during conversion; a 4-D output and two outputs mapped back by name.

The offline model is the case where onnx2tf downloads its MS-COCO sample: every input 4-D,
3 channels, a static batch <= 20. Connections are refused in this process (monkeypatch) and in
every Python process it starts (a ``sitecustomize`` on PYTHONPATH that also logs the attempt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

GUARD = """
    import os, socket

    def _refuse(what):
        with open(os.environ["EDGECONV_TEST_NET_LOG"], "a") as f:
            f.write(what + "\\n")
        raise ConnectionRefusedError("test: no network: " + what)

    _connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return _connect(self, address)
        _refuse(f"connect {address!r}")

    socket.socket.connect = connect
    socket.create_connection = lambda address, *a, **k: _refuse(f"create_connection {address!r}")
    socket.getaddrinfo = lambda host, *a, **k: _refuse(f"getaddrinfo {host!r}")
"""


class TwoHeads(torch.nn.Module):
    """3x12x20 image -> a 4-D feature map [N,6,12,20] and logits [N,5]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.head = torch.nn.Linear(6, 5)

    def forward(self, x):
        feat = torch.relu(self.conv(x))
        return feat, self.head(feat.mean((2, 3)))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    import socket

    log = tmp_path / "net.log"
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(textwrap.dedent(GUARD))
    monkeypatch.setenv("EDGECONV_TEST_NET_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(guard), os.environ.get("PYTHONPATH")) if p))

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return log


def test_guard_catches_a_download(offline):
    """The guard the next test relies on refuses, and logs, a real download attempt in a child."""
    code = ("import urllib.request\nfor url in ('http://93.184.216.34/', 'https://github.com/'):\n    try:\n"
            "        urllib.request.urlopen(url, timeout=5)\n    except Exception as e:\n        print(type(e).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    logged = offline.read_text()
    assert "'93.184.216.34', 80" in logged and "github.com" in logged, out.stderr


def test_onnx2tf_route_runs_offline_with_a_4d_output(offline, tmp_path):
    import edgeconv

    torch.manual_seed(0)
    model = TwoHeads().eval()
    x = torch.rand(1, 3, 12, 20)
    path = tmp_path / "heads.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["feat", "logits"])  # static batch 1: onnx2tf's download case
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.random((16, 3, 12, 20), dtype=np.float32))
    data = rng.random((4, 3, 12, 20), dtype=np.float32)
    np.savez(tmp_path / "data.npz", input=data)
    r = edgeconv.convert(path, "tflite", precision="int8", calibration=tmp_path / "calib.npz",
                         data=tmp_path / "data.npz", output=tmp_path / "o", runs=3, memory=False)
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert not offline.exists(), f"a connection was attempted: {offline.read_text()}"
    det = rep["artifact"]["details"]
    # onnx2tf asked for its sample images, and got the calibration set instead of a download
    assert det["onnx2tf"]["sample_data"] == "calibration"
    # the input became NHWC; the 4-D output came back to the source's NCHW, both outputs by name
    io = rep["artifact"]["io"]
    assert io["inputs"][0]["shape"] == [1, 12, 20, 3] and io["inputs"][0]["layout"] == "NHWC"
    assert [(o["name"], o["shape"]) for o in io["outputs"]] == [("feat", [1, 6, 12, 20]), ("logits", [1, 5])]
    assert det["onnx2tf"]["layout_check"]["feat"]["perm"] == [0, 2, 3, 1]  # onnx2tf made it NHWC; undone
    fid = {f["name"]: f for f in rep["fidelity"]}
    assert fid["feat"]["shape"] == [4, 6, 12, 20] and fid["feat"]["cosine"] >= 0.99
    assert fid["logits"]["cosine"] >= 0.99
    # by hand, and the layout's negative control: NCHW bytes fed as if NHWC give other numbers
    from ai_edge_litert.interpreter import Interpreter

    run = Interpreter(model_path=rep["artifact"]["path"]).get_signature_runner("serving_default")
    with torch.inference_mode():
        ref_feat, ref_logits = (t.numpy() for t in model(torch.from_numpy(data[:1])))
    good = run(input=np.ascontiguousarray(data[:1].transpose(0, 2, 3, 1)))
    bad = run(input=data[:1].reshape(1, 12, 20, 3))
    err = np.abs(good["feat"] - ref_feat).max()
    assert good["feat"].shape == ref_feat.shape and err <= 0.05 * np.abs(ref_feat).max()
    assert np.abs(bad["feat"] - ref_feat).max() > 5 * err
    assert np.abs(good["logits"] - ref_logits).max() <= 0.05 * np.abs(ref_logits).max() + 1e-3

