"""Reference networks: torchvision parity of parameter counts, determinism, ONNX export parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeconv.testing import refnets

# dynamo=False (legacy TorchScript exporter) is deprecated but still works in torch 2.13.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

EXPECTED_OUT = {"resnet18": (1, 1000), "mobilenet_v2": (1, 1000), "transformer": (1, 10), "digits": (1, 10)}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=refnets.NAMES)
def built(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]:
    model, x = refnets.build(request.param, seed=0)
    with torch.no_grad():
        y = model(x)
    return request.param, model, x, y


def test_names_cover_build() -> None:
    assert set(refnets.NAMES) == set(EXPECTED_OUT)
    with pytest.raises(KeyError):
        refnets.build("nope")


def test_torchvision_parameter_counts() -> None:
    assert _n_params(refnets.resnet18()) == 11_689_512
    assert _n_params(refnets.mobilenet_v2()) == 3_504_872
    assert refnets.resnet18(num_classes=10).fc.out_features == 10


def test_forward_shape(built: tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]) -> None:
    name, model, x, y = built
    assert not model.training
    assert x.shape[0] == 1
    assert tuple(y.shape) == EXPECTED_OUT[name]
    assert torch.isfinite(y).all()


def test_deterministic(built: tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]) -> None:
    name, _, x, y = built
    state = torch.random.get_rng_state()
    model2, x2 = refnets.build(name, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert torch.equal(x, x2)
    with torch.no_grad():
        assert torch.equal(model2(x2), y)
    model3, _ = refnets.build(name, seed=1)
    with torch.no_grad():
        assert not torch.equal(model3(x), y)


def test_bn_stats_randomised() -> None:
    model, _ = refnets.build("digits")
    assert isinstance(model, refnets.DigitsCNN)
    var = model.bn1.running_var
    assert var is not None and not torch.allclose(var, torch.ones_like(var))
    assert float(var.min()) >= 0.5 and float(var.max()) <= 1.5


def test_transformer_token_input() -> None:
    model = refnets.TransformerEncoderNet(vocab=50, d_model=32, nhead=4, num_layers=1, dim_ff=64, seq_len=8)
    assert tuple(model(torch.randint(0, 50, (2, 8))).shape) == (2, 10)


def test_onnx_export_matches(
    built: tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    name, model, x, y = built
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x.numpy()})
    assert np.abs(got - y.numpy()).max() < 1e-4
    if name == "transformer":
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"MatMul", "Softmax", "LayerNormalization"} <= ops
        xb = torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            yb = model(xb).numpy()
        (gotb,) = sess.run(None, {"input": xb.numpy()})
        assert gotb.shape == (3, 10)
        assert np.abs(gotb - yb).max() < 1e-4


def test_onnx_export_keeps_batchnorm_without_constant_folding(tmp_path: Path) -> None:
    # torch.onnx.export folds eval-mode BN into Conv by default; do_constant_folding=False keeps
    # BatchNormalization nodes (with the randomised running stats) for BN-folding paths to handle.
    model, x = refnets.build("digits")
    path = tmp_path / "digits_bn.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=False)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("BatchNormalization") == 2
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() < 1e-4
