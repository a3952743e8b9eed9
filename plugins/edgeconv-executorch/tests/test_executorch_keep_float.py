"""keep_float on ExecuTorch: module names (or torch's ONNX node names) -> XNNPACKQuantizer's node filter, on a
model whose INT8 breaks at one convolution's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgeconv_executorch.keep import onnx_scope_to_module
from torch import nn

import edgeconv
from edgeconv.plugin import BadInput
from edgeconv.report import Budgets
from edgeconv.testing.refnets import build

SHAPE = (3, 16, 16)


class Outlier(nn.Module):
    """conv1 -> relu1 -> conv2 -> gap -> fc (10 classes). conv1's channel 7 is ``2000 * relu(x[0] - 0.9)``: zero
    but on the brightest tenth of the pixels, where it reaches hundreds; conv2 reads it with tiny weights, so the
    float model barely notices, but the INT8 range of conv2's input spans the outlier and every ordinary
    activation (around 1) rounds to 0: INT8 breaks at conv2's input, and only there (the torch twin of
    tests/test_sensitivity.py's outlier_classifier)."""

    def __init__(self, seed: int = 0, outlier: float = 2000.0, threshold: float = 0.9) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        rng = np.random.default_rng(seed)
        w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
        b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
        w1[7] = 0.0
        w1[7, 0, 1, 1] = outlier
        b1[7] = -threshold * outlier
        w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
        w2[:, 7] *= 1e-5
        with torch.no_grad():
            for p, a in ((self.conv1.weight, w1), (self.conv1.bias, b1), (self.conv2.weight, w2),
                         (self.conv2.bias, np.zeros(16, np.float32)),
                         (self.fc.weight, rng.standard_normal((10, 16)).astype(np.float32)),
                         (self.fc.bias, np.zeros(10, np.float32))):
                p.copy_(torch.from_numpy(a))
            x = torch.from_numpy(np.random.default_rng(seed + 100).random((512, *SHAPE), dtype=np.float32))
            self.fc.bias.copy_(-self(x).mean(0))  # centred logits
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(self.conv2(self.relu1(self.conv1(x)))), 1))


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """The model, 64 calibration samples, and 400 test samples labelled by the float model (the clearest top-1
    margins of 2000, so that ordinary INT8 rounding flips none and the drop measures the broken layer only)."""
    base = tmp_path_factory.mktemp("outlier")
    model = Outlier()
    rng = np.random.default_rng(1)
    x = rng.random((2000, *SHAPE), dtype=np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    top = np.sort(y, 1)
    keep = np.argsort(-(top[:, -1] - top[:, -2]))[:400]
    np.savez(base / "calib.npz", input=rng.random((64, *SHAPE), dtype=np.float32))
    np.savez(base / "test.npz", input=x[keep], labels=y[keep].argmax(1))
    return {"model": model, "calib": str(base / "calib.npz"), "test": str(base / "test.npz"), "base": base}


def _int8(f, name, **options):
    return edgeconv.convert(f["model"], "executorch", precision="int8", calibration=f["calib"], data=f["test"],
                            source_options={"example_inputs": torch.zeros(1, *SHAPE)}, output=f["base"] / name,
                            memory=False, runs=3, options=options)


def test_onnx_node_names_of_torchs_exporter_map_to_the_owning_module(tmp_path):
    assert onnx_scope_to_module("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert onnx_scope_to_module("/layer2/layer2.0/downsample/downsample.0/Conv") == "layer2.0.downsample.0"
    assert onnx_scope_to_module("/features/features.1/conv/conv.0/conv.0.0/Conv") == "features.1.conv.0.0"
    assert onnx_scope_to_module("/Relu_1") == ""
    # against the real exporter: every Conv/Gemm node of ResNet-18 and MobileNetV2 names a module of that type
    import onnx

    for name in ("resnet18", "mobilenet_v2"):
        model, example = build(name)
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17)
        modules = dict(model.named_modules())
        nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
        assert len(nodes) == {"resnet18": 21, "mobilenet_v2": 53}[name]
        for n in nodes:
            owner = modules[onnx_scope_to_module(n.name)]
            assert isinstance(owner, nn.Conv2d if n.op_type == "Conv" else nn.Linear), n.name


def test_keeping_the_one_broken_convolution_in_float_fixes_int8(outlier):
    plain = _int8(outlier, "plain")
    assert plain.exit_code == 1 and plain.report["accuracy"]["drop_pp"] > 20
    kept = _int8(outlier, "kept", keep_float="conv2")
    assert kept.exit_code == 0, kept.report["verdict"]
    assert kept.report["accuracy"]["drop_pp"] < 1.0
    assert kept.report["fidelity"][0]["cosine"] > plain.report["fidelity"][0]["cosine"] + 0.1
    p = kept.report["passes"][0]
    assert p["keep_float"] == ["conv2"] and p["keep_float_modules"] == ["conv2"]
    # conv2 reads a float input: its producer (relu1, and conv1 behind it) computes in float too
    assert p["float_producers"] == ["relu1 (relu)", "conv1 (conv2d)"]
    assert p["float_ops"] == ["conv1 (conv2d)", "conv2 (conv2d)"] and p["quantized_ops"] == {"linear": 1}
    assert plain.report["passes"][0]["quantized_ops"] == {"conv2d": 2, "linear": 1}
    # the precision share counts them, kept float on purpose: not a failure
    share = kept.report["precision_share"]
    assert share["nodes"] == {"total": 3, "at_precision": 1, "kept_float": 2, "in_subgraphs": 0,
                              "in_subgraphs_at_precision": 0}
    assert share["share_not_kept"] == 1.0 and share["pass"] is True
    assert plain.report["precision_share"]["share"] == 1.0
    # everything still runs in XNNPACK (the float convolutions as fp32 operators)
    d = kept.report["artifact"]["details"]["delegation"]
    assert d["portable_ops"] == 0 and d["delegated_share"] == 1.0


def test_keep_float_takes_the_onnx_node_names_auto_ranks(outlier):
    kept = _int8(outlier, "kept-onnx", keep_float="/conv2/Conv")
    assert kept.exit_code == 0, kept.report["verdict"]
    p = kept.report["passes"][0]
    assert p["keep_float"] == ["/conv2/Conv"] and p["keep_float_modules"] == ["conv2"]
    assert kept.report["accuracy"]["drop_pp"] < 1.0


def test_keep_float_names_that_are_not_modules(outlier):
    with pytest.raises(BadInput, match=r"keep_float: the model has no module 'conv3'; did you mean 'conv\d'"):
        _int8(outlier, "typo", keep_float="conv3")
    with pytest.raises(BadInput, match=r"no module 'conv9' \(ONNX node /conv9/Conv\)"):
        _int8(outlier, "typo-onnx", keep_float="/conv9/Conv")


def test_a_top_level_onnx_node_keeps_nothing_and_says_so(outlier):
    r = _int8(outlier, "top", keep_float="/Flatten")
    assert any("/Flatten is an operation of the top-level module" in w for w in r.report["warnings"])
    assert r.report["passes"][0]["quantized_ops"] == {"conv2d": 2, "linear": 1}


def test_keep_float_is_ignored_with_a_warning_outside_int8(outlier):
    r = edgeconv.convert(outlier["model"], "executorch", precision="fp32", data=outlier["test"],
                         source_options={"example_inputs": torch.zeros(1, *SHAPE)}, output=outlier["base"] / "fp32",
                         memory=False, runs=3, options={"keep_float": "conv2"})
    assert r.exit_code == 0
    assert "keep_float applies to int8 on this target; ignored at fp32" in r.report["warnings"]


def test_auto_s_layer_fallback_ranks_the_onnx_export_and_repairs_int8(outlier):
    """``--precision auto`` on a target that takes torch models: the layers are ranked on the model's ONNX export
    (the core's torch.to_onnx route), and the ONNX names it keeps float reach the quantizer as modules."""
    r = edgeconv.convert(outlier["model"], "executorch", precision="auto", calibration=outlier["calib"],
                         data=outlier["test"], source_options={"example_inputs": torch.zeros(1, *SHAPE)},
                         output=outlier["base"] / "auto", memory=False, runs=3, precisions=("int8",), tune="off",
                         budgets=Budgets(max_accuracy_drop=1.0))
    assert r.exit_code == 0, r.report["verdict"]
    auto = r.report["auto"]
    fallback = auto["sensitivity"]
    assert fallback["found"] and fallback["keep_float"] == ["/conv2/Conv"], fallback
    assert fallback["ranking"] == "fake-quant" and fallback["ranked"][0]["node"] == "/conv2/Conv"
    assert "torch model" in fallback["trace"]["why_not"]  # the .pte exposes no ONNX-named tensors: said, not hidden
    assert r.report["passes"][0]["keep_float_modules"] == ["conv2"]
    assert r.report["accuracy"]["drop_pp"] < 1.0


def test_an_int8_program_whose_weighted_ops_stayed_float_fails_its_precision_share():
    from edgeconv_executorch.precision import weighted_share

    from edgeconv.plugin import share_failure

    none = weighted_share({"quantized": {}, "float": ["features.0 (conv2d)", "fc (linear)"]}, [], [])
    assert none["share"] == 0.0 and none["not_at_precision"][0] == {"node": "features.0", "op_type": "conv2d", "macs": 0}
    assert "0 of 2 compute nodes are int8" in share_failure(none)
    kept = weighted_share({"quantized": {"linear": 1}, "float": ["conv2 (conv2d)", "conv1 (conv2d)"]}, ["conv2"],
                          ["relu1 (relu)", "conv1 (conv2d)"])
    assert (kept["share"], kept["share_not_kept"]) == (round(1 / 3, 4), 1.0) and share_failure(kept) is None
