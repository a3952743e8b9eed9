"""Structured channel pruning (edgeconv.prune, --prune): parameter counts, the IO contract kept,
accuracy recovered by a fine-tune callback on the digits CNN, and bad input refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from edgeconv.errors import BadInput, ToolchainFailed, ToolchainMissing  # noqa: E402
from edgeconv.builtins.torch_prune import parse_ratio, prune  # noqa: E402
from edgeconv.testing.refnets import build, digits_trained, finetune_digits  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine torch's default spins (5x slower fine-tunes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _digits_test(digits):
    d = np.load(digits["test"])
    return d["input"], d["labels"]


def _accuracy(module, x, y) -> float:
    with torch.inference_mode():
        return float((module(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_digits_trained_reproduces_the_shipped_model(digits):
    """The torch DigitsCNN built from the shipped ONNX weights scores what the ONNX file scores."""
    import onnxruntime as ort

    x, y = _digits_test(digits)
    model = digits_trained()
    sess = ort.InferenceSession(str(digits["model"]), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    with torch.inference_mode():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert _accuracy(model, x, y) >= 0.99


@pytest.mark.parametrize("text,ratio", [("0.3", 0.3), ("30%", 0.3), (0.5, 0.5)])
def test_parse_ratio(text, ratio):
    assert parse_ratio(text) == pytest.approx(ratio)


@pytest.mark.parametrize("text", ["0", "1", "1.3", "-0.1", "abc", "30 percent"])
def test_parse_ratio_refuses(text):
    with pytest.raises(BadInput, match="--prune"):
        parse_ratio(text)


def test_resnet18_loses_a_quarter_of_its_parameters():
    model, _ = build("resnet18")
    x = torch.randn(1, 3, 64, 64)
    before = _params(model)
    res = prune(model, 0.3, x, runs=1)
    after = _params(res.module)
    assert after <= 0.75 * before, (before, after)
    assert _params(model) == before  # the source module is left as it was
    assert res.report["parameters"] == {"before": before, "after": after, "ratio": round(after / before, 4),
                                        "reduction": round(1 - after / before, 4)}
    assert res.report["weights_bytes"]["after"] < res.report["weights_bytes"]["before"]
    assert res.report["ignored_layers"] == ["fc"]
    with torch.inference_mode():
        assert res.module(x).shape == (1, 1000)
    # residual additions stay consistent: every block's output channels match its shortcut
    for layer in (res.module.layer1, res.module.layer2, res.module.layer3, res.module.layer4):
        for block in layer:
            short = block.downsample[0].out_channels if block.downsample is not None else block.conv1.in_channels
            assert block.conv2.out_channels == short


def test_digits_loses_a_quarter_of_its_parameters_and_keeps_its_classes(digits):
    x, y = _digits_test(digits)
    model = digits_trained()
    res = prune(model, 0.3, torch.zeros(1, 1, 8, 8), data=(x, y), runs=2)
    assert res.report["parameters"]["after"] <= 0.75 * res.report["parameters"]["before"]
    assert res.module.fc.out_features == 10 and res.module.conv1.out_channels < 32
    acc = res.report["accuracy"]
    assert acc["samples"] == len(y) and acc["before"] == pytest.approx(_accuracy(model, x, y), abs=1e-6)
    assert acc["after"] == pytest.approx(_accuracy(res.module, x, y), abs=1e-6)
    assert res.report["finetune"] is None


def test_digits_fine_tuned_through_the_callback_stays_within_1pp(digits):
    """Issue #10: --prune 0.3 on the digits CNN, a short fine-tune, accuracy drop <= 1 pp."""
    x, y = _digits_test(digits)
    calls = []

    def tune(module):
        calls.append(_params(module))
        finetune_digits(module)

    res = prune(digits_trained(), 0.3, torch.zeros(1, 1, 8, 8), finetune=tune, data=(x, y), runs=2)
    acc = res.report["accuracy"]
    assert calls == [res.report["parameters"]["after"]]  # called once, on the pruned model
    assert res.report["parameters"]["reduction"] >= 0.25
    assert acc["after"] == pytest.approx(_accuracy(res.module, x, y), abs=1e-6)
    assert acc["drop_pp"] <= 1.0, acc
    assert res.report["finetune"]["seconds"] > 0


def test_a_head_behind_softmax_keeps_its_outputs():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 4 * 4, 5), nn.Softmax(dim=1))
    res = prune(model, 0.3, torch.randn(1, 3, 8, 8), runs=1)
    assert res.report["ignored_layers"] == ["5"] and res.module[5].out_features == 5
    assert res.report["parameters"]["after"] < res.report["parameters"]["before"]


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten())
        self.cls = nn.Linear(16 * 6 * 6, 5)
        self.box = nn.Linear(16 * 6 * 6, 4)

    def forward(self, x):
        h = self.body(x)
        return torch.softmax(self.cls(h), 1), torch.sigmoid(self.box(h))


def test_heads_it_cannot_find_are_named_by_the_caller():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ToolchainFailed, match="changed the output shapes .*prune_ignore"):
        prune(TwoHeads(), 0.3, x, runs=1)
    res = prune(TwoHeads(), 0.3, x, runs=1, ignored_layers=["cls", "box"])
    assert res.report["ignored_layers"] == ["cls", "box"] and res.module.body[0].out_channels < 16


def test_refuses_torchscript_and_bad_arguments():
    model = digits_trained()
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(BadInput, match="TorchScript"):
        prune(torch.jit.script(model), 0.3, x)
    with pytest.raises(BadInput, match="finetune must be callable"):
        prune(model, 0.3, x, finetune="train.py")
    with pytest.raises(BadInput, match="ignored_layers"):
        prune(model, 0.3, x, ignored_layers=["no_such_layer"])
    with pytest.raises(BadInput, match="labels"):
        prune(model, 0.3, x, data=(np.zeros((4, 1, 8, 8), np.float32), np.zeros(3)))


def test_missing_torch_pruning_gives_the_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(ToolchainMissing) as err:
        prune(digits_trained(), 0.3, torch.zeros(1, 1, 8, 8))
    assert "torch-pruning" in err.value.one_line() and 'edgeconv[torch]' in err.value.one_line()


def test_convert_prunes_a_module_through_source_options(digits, tmp_path):
    """The API: convert(module, source_options={"prune", "finetune", "prune_data"}); the report
    carries the before/after in source.meta.prune, fidelity is against the pruned module."""
    import edgeconv

    tuned = []
    res = edgeconv.convert(
        digits_trained(), "onnxruntime", output=tmp_path / "out", data=digits["test"], runs=3, memory=False,
        source_options={"example_inputs": torch.zeros(1, 1, 8, 8), "input_names": ["input"], "prune": 0.3,
                        "finetune": lambda m: tuned.append(m), "prune_data": digits["test"]},
    )
    assert res.ok, res.report["verdict"]
    meta = res.report["source"]["meta"]
    p = meta["prune"]
    assert len(tuned) == 1 and meta["parameters"] == p["parameters"]["after"] == _params(tuned[0])
    assert p["parameters"]["reduction"] >= 0.25 and p["accuracy"]["samples"] == 540
    # the artifact computes what the pruned module computes (not the unpruned source)
    assert res.report["fidelity"][0]["cosine"] > 0.9999
    assert res.report["accuracy"]["source"] == pytest.approx(p["accuracy"]["after"], abs=1e-6)
    assert any("pruned 30%" in w for w in res.report["warnings"])
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["source"]["meta"]["prune"]["parameters"] == p["parameters"]


def test_cli_prune_flag(cli, digits, tmp_path):
    res = cli("convert", "edgeconv.testing.refnets:digits_trained", "--input-shape", "input:1,1,8,8", "--prune", "0.3",
              "--data", str(digits["test"]), "-o", str(tmp_path / "o"), "--runs", "3", "--no-memory", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    p = doc["source"]["meta"]["prune"]
    assert p["ratio"] == 0.3 and p["parameters"]["reduction"] >= 0.25 and p["finetune"] is None
    assert "pruned 30% of the channels" in res.stderr and "not fine-tuned" in res.stderr
    assert any("without fine-tuning" in w for w in doc["warnings"])


@pytest.mark.parametrize("args,message", [
    (["--prune", "1.5"], "--prune '1.5' must be a channel ratio"),
    (["--prune", "lots"], "--prune 'lots' is not a number"),
])
def test_cli_prune_bad_ratio(cli, digits, tmp_path, args, message):
    res = cli("convert", "edgeconv.testing.refnets:digits_trained", "--input-shape", "input:1,1,8,8", *args,
              "-o", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_round_to_keeps_channel_multiples():
    res = prune(digits_trained(), 0.3, torch.zeros(1, 1, 8, 8), round_to=8, runs=1)
    m = res.module
    assert all(c % 8 == 0 for c in (m.conv1.out_channels, m.conv2.out_channels, m.conv3.out_channels))
    assert m.conv2.out_channels < 64


@pytest.mark.parametrize("args,message", [
    (["--prune-round-to", "8"], "--prune-round-to goes with --prune RATIO"),
    (["--prune", "0.3", "--prune-round-to", "0"], "must be a positive channel multiple"),
])
def test_cli_prune_round_to_bad_usage(cli, tmp_path, args, message):
    res = cli("convert", "edgeconv.testing.refnets:digits_trained", "--input-shape", "input:1,1,8,8", *args,
              "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_prune_refuses_a_non_torch_source(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "--prune", "0.3", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--prune needs a PyTorch source" in res.stderr
    assert not (tmp_path / "o").exists()
