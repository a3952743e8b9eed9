"""Small reference networks in plain PyTorch (no torchvision) for tests and benchmarks.

``resnet18`` and ``mobilenet_v2`` mirror torchvision's definitions layer for layer, so
torchvision state_dicts load with ``strict=True``.  ``build`` returns a seeded eval-mode
model plus an example input; BatchNorm running statistics are randomised so that BN
folding is exercised non-trivially.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "NAMES",
    "DigitsCNN",
    "MobileNetV2",
    "ResNet",
    "TransformerEncoderNet",
    "build",
    "digits_train_split",
    "digits_trained",
    "finetune_digits",
    "mobilenet_v2",
    "resnet18",
    "transformer_encoder",
]

NAMES: tuple[str, ...] = ("resnet18", "mobilenet_v2", "transformer", "digits")


# --- ResNet-18 (torchvision.models.resnet18) -------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """torchvision-compatible ResNet-18 (11,689,512 parameters at 1000 classes)."""
    return ResNet([2, 2, 2, 2], num_classes)


# --- MobileNetV2 (torchvision.models.mobilenet_v2, width 1.0) ---------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNReLU6(nn.Sequential):
    """torchvision's Conv2dNormActivation(..., activation_layer=nn.ReLU6): keys .0/.1/.2."""

    def __init__(self, inp: int, oup: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(inp, oup, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = oup


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [ConvBNReLU6(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel, self.last_channel = 32, 1280
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in self.SETTINGS:
            output_channel = _make_divisible(c)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """torchvision-compatible MobileNetV2, width 1.0 (3,504,872 parameters at 1000 classes)."""
    return MobileNetV2(num_classes)


# --- Transformer encoder classifier ----------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention from Linear/matmul/softmax (exports to plain MatMul/Softmax)."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model={d_model} not divisible by nhead={nhead}")
        self.nhead, self.head_dim = nhead, d_model // nhead
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        qkv = self.qkv(x).reshape(b, s, 3, self.nhead, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [b, h, s, hd]
        attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, s, d)
        return self.proj(out)


class EncoderLayer(nn.Module):
    """Pre-norm encoder block: x + attn(ln(x)); x + ff(ln(x)) with a GELU feed-forward."""

    def __init__(self, d_model: int, nhead: int, dim_ff: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, nhead)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, dim_ff), nn.GELU(), nn.Linear(dim_ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class TransformerEncoderNet(nn.Module):
    """Encoder classifier on float input [batch, seq_len, d_model] (or int64 token ids
    [batch, seq_len] when ``vocab`` is given); learned positional embedding, mean pooling."""

    def __init__(
        self,
        vocab: int | None = None,
        d_model: int = 256,
        nhead: int = 4,
        num_layers: int = 4,
        dim_ff: int = 1024,
        seq_len: int = 128,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.seq_len, self.d_model = seq_len, d_model
        self.embed = nn.Embedding(vocab, d_model) if vocab is not None else None
        self.pos_embed = nn.Parameter(torch.empty(1, seq_len, d_model))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_ff) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.embed is not None:
            x = self.embed(x)
        x = x + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def transformer_encoder(**kwargs: Any) -> TransformerEncoderNet:
    """Factory with the TransformerEncoderNet defaults (float input [batch, 128, 256], 10 classes)."""
    return TransformerEncoderNet(**kwargs)


# --- Digits CNN (8x8 grey digits, 10 classes) ------------------------------------------
class DigitsCNN(nn.Module):
    """Small CNN for input [batch, 1, 8, 8] (sklearn digits); BN after conv1/conv2 only."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = self.avgpool(torch.relu(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


def digits_trained() -> DigitsCNN:
    """The DigitsCNN with the trained weights of the shipped ``data/digits_cnn.onnx``, in eval mode.

    ``scripts/train_digits.py`` trained the same network (bias-free conv1/conv2 + BN) and the
    ONNX export folded each BN into its conv; the folded weights load here into the convs,
    with identity BatchNorms (weight 1, bias 0, mean 0, var 1 - eps), so the module computes
    what the ONNX file computes (test accuracy 99.07 %) without committing a torch weights
    file, and without minutes of training. Needs ``onnx`` (a core dependency).
    """
    from importlib.resources import files

    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string((files("edgeconv") / "data" / "digits_cnn.onnx").read_bytes())
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    model = DigitsCNN()
    state = {"fc.weight": w["gemm1.w"], "fc.bias": w["gemm1.b"]}
    for conv in ("conv1", "conv2", "conv3"):
        state[f"{conv}.weight"], state[f"{conv}.bias"] = w[f"{conv}.w"], w[f"{conv}.b"]
    for name in ("bn1", "bn2"):
        bn = getattr(model, name)
        n = bn.num_features
        state.update({f"{name}.weight": torch.ones(n), f"{name}.bias": torch.zeros(n),
                      f"{name}.running_mean": torch.zeros(n), f"{name}.running_var": torch.full((n,), 1.0 - bn.eps),
                      f"{name}.num_batches_tracked": torch.tensor(0)})
    model.load_state_dict(state, strict=True)
    return model.eval()


def digits_train_split() -> tuple[Tensor, Tensor]:
    """The training split ``scripts/train_digits.py`` used (inputs [1257,1,8,8] in 0..1, int64 labels).

    The shipped ``data/digits_test.npz`` is the complementary test split. Needs scikit-learn
    (it ships the digits data set): for fine-tuning tests and benchmarks only.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, _, y_tr, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return torch.from_numpy(x_tr), torch.from_numpy(y_tr)


def finetune_digits(module: nn.Module, epochs: int = 8, seed: int = 0) -> nn.Module:
    """A short fine-tune of a (pruned) DigitsCNN, e.g. the ``finetune`` callback of ``edgeconv.prune``.

    The training split (``digits_train_split``), batches of 64, Adam with a one-cycle schedule
    (max lr 2e-3), and distillation from the unpruned model (``digits_trained``): half the labels'
    cross-entropy plus the KL divergence to the teacher's softened logits (temperature 4, scaled
    by T^2 / 2). Deterministic for a given seed and thread count. Returns the module, in eval mode.
    """
    import torch.nn.functional as F

    x, y = digits_train_split()
    teacher = digits_trained()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=2e-3)
    steps = epochs * -(-len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            out = module(x[idx])
            with torch.no_grad():
                soft = F.softmax(teacher(x[idx]) / 4.0, 1)
            loss = 0.5 * F.cross_entropy(out, y[idx]) + 8.0 * F.kl_div(F.log_softmax(out / 4.0, 1), soft,
                                                                         reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return module.eval()


# --- build -----------------------------------------------------------------------------
_FACTORIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (resnet18, (1, 3, 224, 224)),
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224)),
    "transformer": (transformer_encoder, (1, 128, 256)),
    "digits": (DigitsCNN, (1, 1, 8, 8)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """Return (eval-mode model with deterministic random weights, example input of batch 1).

    Seeds with ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` so the caller's
    global RNG state is left untouched."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown reference net {name!r}; expected one of {NAMES}")
    factory, shape = _FACTORIES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                    m.running_mean.normal_().mul_(0.1)
                    m.running_var.uniform_(0.5, 1.5)
        example = torch.randn(shape)
    return model.eval(), example
