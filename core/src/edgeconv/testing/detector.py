"""A reference detector for the fidelity contract: plain PyTorch, a YOLO-style head, trained on synthetic shapes.

The model takes ``images`` [1, 3, 320, 320] (RGB, 0..1) and returns one output ``output0`` [1, 4+C, N] in the
Ultralytics v8 layout: for each of the N = 400 anchors (a 20×20 grid at stride 16) the box centre x, centre y,
width and height in pixels (0..320), then C = 3 class scores in 0..1 (circle, square, triangle). One tensor thus
concatenates two ranges 300× apart: what a per-tensor INT8 scale destroys (issue 17).

The scenes are circles, squares and triangles (stretched up to 3:1) of 32..96 px in random colours on uniform
noise, 1..3 per image, with their labelled boxes. The scores are trained towards the IoU of each cell's box with
its object's (as YOLOv8 does): detections carry real-looking confidences, not all 0.99. ``trained()`` trains it (about two minutes on two CPU cores, seeded) the first time and
caches the weights in ``$EDGECONV_TESTING_CACHE`` or ``~/.cache/edgeconv-testing``, keyed by a hash of this file:
they are never committed. Its detections are real: ``evaluate`` gives its mAP@0.5 on held-out scenes.

    from edgeconv.testing import detector
    model = detector.trained()                     # torch module, eval mode
    onnx_file = detector.export_onnx(tmp / "det.onnx")
    data = detector.scenes(32, seed=1)             # {"images": [32,3,320,320], "labels": [32,3,5]}
    np.savez(tmp / "scenes.npz", **data)           # --data with labelled boxes (class, x1, y1, x2, y2)

Needs torch (and onnx for ``export_onnx``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["CLASSES", "SIZE", "STRIDE", "TinyDetector", "cache_dir", "evaluate", "export_onnx", "scene", "scenes",
           "train", "trained"]

SIZE = 320
STRIDE = 16
GRID = SIZE // STRIDE
CLASSES = ("circle", "square", "triangle")
MAX_OBJECTS = 3
TRAIN_SEED = 0
TRAIN_STEPS = 800
BATCH = 16


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECONV_TESTING_CACHE") or Path.home() / ".cache" / "edgeconv-testing")


# -- the scenes ----------------------------------------------------------------------------------------------
def _shape_mask(kind: int, w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    u, v = xx / w, yy / h  # 0..1 across the box
    if kind == 0:  # circle (an ellipse in a w×h box)
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if kind == 1:  # square (a rectangle)
        return np.ones((h, w), dtype=bool)
    return v >= 2 * np.abs(u - 0.5)  # triangle: apex at the top centre, base along the bottom


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image [3, 320, 320] float32 in 0..1 and its boxes [M, 5] (class, x1, y1, x2, y2), M = 1..3: shapes of
    32..96 px a side (aspect ratios up to 3:1) in random colours on uniform noise."""
    img = rng.random((SIZE, SIZE, 3), dtype=np.float32) * 0.6
    boxes: list[list[float]] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _try in range(20):
            w, h = int(rng.integers(32, 97)), int(rng.integers(32, 97))
            x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
            if all(x + w <= b[1] or b[3] <= x or y + h <= b[2] or b[4] <= y for b in boxes):
                break
        else:
            continue
        kind = int(rng.integers(0, len(CLASSES)))
        colour = rng.uniform(0.65, 1.0, 3).astype(np.float32) * rng.permutation([1.0, 1.0, 0.3]).astype(np.float32)
        img[y : y + h, x : x + w][_shape_mask(kind, w, h)] = colour
        boxes.append([kind, x, y, x + w, y + h])
    return img.transpose(2, 0, 1).copy(), np.asarray(boxes, dtype=np.float32).reshape(-1, 5)


def scenes(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """``n`` scenes as verification data: ``images`` [n, 3, 320, 320] and ``labels`` [n, 3, 5] (class, x1, y1, x2,
    y2; class -1 pads), the format of the detection task check. Seed 0 is the training stream's."""
    rng = np.random.default_rng(seed + 1000)
    images = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    labels = np.full((n, MAX_OBJECTS, 5), -1.0, dtype=np.float32)
    for i in range(n):
        images[i], b = scene(rng)
        labels[i, : len(b)] = b
    return {"images": images, "labels": labels}


# -- the network ---------------------------------------------------------------------------------------------
def _block(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2 if k % 2 else 0, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class TinyDetector(nn.Module):
    """Backbone to a 20×20 grid, a 1×1 head of 4 box + C class values per cell, decoded in the graph like the
    Ultralytics heads: centre = (cell + 0.5 + 2·tanh(t)) · stride, size = exp(t) · 4 · stride, score = sigmoid."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(  # 320 -> 80 (average) -> 40 -> 20, then three 3×3 at stride 16
            nn.AvgPool2d(4), _block(3, 24, 3, 2), _block(24, 32, 3, 2), _block(32, 32), _block(32, 32), _block(32, 32),
        )
        self.head = nn.Conv2d(32, 4 + classes, 1)
        gy, gx = torch.meshgrid(torch.arange(GRID, dtype=torch.float32), torch.arange(GRID, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("grid", torch.stack([gx, gy]).reshape(1, 2, GRID * GRID) + 0.5, persistent=False)

    def raw(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)).flatten(2)  # [B, 4+C, N]

    def forward(self, x: Tensor) -> Tensor:
        t = self.raw(x)
        xy = (self.grid + 2 * torch.tanh(t[:, :2])) * STRIDE
        wh = torch.exp(t[:, 2:4].clamp(max=4.0)) * (4 * STRIDE)
        return torch.cat([xy, wh, torch.sigmoid(t[:, 4:])], dim=1)


def _targets(labels: list[np.ndarray], classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor: class targets [B, C, N], box targets [B, 4, N] (centre/stride, log(size / 4·stride)) and the
    positive mask [B, N]: the 3×3 cells around each object's centre cell."""
    b = len(labels)
    cls = torch.zeros(b, classes, GRID * GRID)
    box = torch.zeros(b, 4, GRID * GRID)
    pos = torch.zeros(b, GRID * GRID, dtype=torch.bool)
    for i, rows in enumerate(labels):
        for c, x1, y1, x2, y2 in rows.tolist():
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            gx, gy = int(cx // STRIDE), int(cy // STRIDE)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    x, y = gx + dx, gy + dy
                    if 0 <= x < GRID and 0 <= y < GRID:
                        a = y * GRID + x
                        cls[i, int(c), a] = 1.0
                        box[i, :, a] = torch.tensor([cx / STRIDE, cy / STRIDE, np.log(w / (4 * STRIDE)),
                                                     np.log(h / (4 * STRIDE))])
                        pos[i, a] = True
    return cls, box, pos


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes [B, 4, N] given as (cx, cy, w, h), anchor by anchor."""
    lt = torch.maximum(a[:, :2] - a[:, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    rb = torch.minimum(a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    inter = (rb - lt).clamp(min=0).prod(1)
    return inter / (a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter).clamp(min=1e-9)


def train(steps: int = TRAIN_STEPS, seed: int = TRAIN_SEED, log: Any = None) -> TinyDetector:
    """Train on a seeded stream of scenes (AdamW, one-cycle schedule): box L1 on the positive cells, class BCE
    towards the IoU of the cell's box with the object's (as YOLOv8 and VarifocalNet train their scores): a score
    says how well the box fits, so detections carry confidences of 0.3..0.9 as real detectors do."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinyDetector()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    bce = nn.BCEWithLogitsLoss(reduction="sum")
    model.train()
    for step in range(steps):
        batch = [scene(rng) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([im for im, _ in batch]))
        cls_t, box_t, pos = _targets([b for _, b in batch], len(CLASSES))
        t = model.raw(x)
        n_pos = max(int(pos.sum()), 1)
        xy = model.grid + 2 * torch.tanh(t[:, :2])
        pred_box = torch.cat([xy, t[:, 2:4]], dim=1)
        box_loss = (pred_box - box_t).abs().sum(1)[pos].sum() / n_pos
        with torch.no_grad():
            wh = lambda z: torch.exp(z.clamp(max=4.0)) * 4  # noqa: E731  (in cells)
            iou = _iou(torch.cat([xy, wh(t[:, 2:4])], 1), torch.cat([box_t[:, :2], wh(box_t[:, 2:])], 1))
        cls_loss = bce(t[:, 4:], cls_t * iou[:, None, :]) / n_pos
        loss = cls_loss + box_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and step % 100 == 0:
            log(f"step {step}: loss {loss.item():.3f} (class {cls_loss.item():.3f}, box {box_loss.item():.3f})")
    return model.eval()


def _code_hash() -> str:
    """A hash of what the weights depend on: the scenes, the network and the training (not the docs)."""
    import inspect

    parts = [inspect.getsource(f) for f in (_shape_mask, scene, _block, TinyDetector, _targets, _iou, train)]
    parts.append(repr((SIZE, STRIDE, CLASSES, MAX_OBJECTS, TRAIN_SEED, TRAIN_STEPS, BATCH, torch.__version__)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def trained(log: Any = None) -> TinyDetector:
    """The trained detector (eval mode): from the cache, else trained now and cached (a few minutes on CPU)."""
    path = cache_dir() / f"detector-{_code_hash()}.pt"
    model = TinyDetector()
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # the same arithmetic on every host: reproducible weights
    try:
        model = train(log=log)
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic: two test processes may train at once
    return model.eval()


def export_onnx(path: str | Path, model: TinyDetector | None = None, opset: int = 17) -> Path:
    """The trained detector as ONNX: input ``images`` [1, 3, 320, 320], output ``output0`` [1, 7, 400]."""
    path = Path(path)
    model = model or trained()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["images"],
                          output_names=["output0"], opset_version=opset, dynamo=False)
    return path


def evaluate(outputs: np.ndarray, labels: np.ndarray, conf: float = 0.25) -> float:
    """mAP@0.5 of detector outputs [n, 4+C, N] against labelled boxes [n, M, 5] (the detection task's decoding)."""
    from edgeconv.builtins.tasks import _label_boxes, average_precision, decode

    return average_precision(decode(outputs, "xywh_cn", conf=conf), _label_boxes(labels), 0.5) or 0.0


def _main() -> None:
    import time

    start = time.perf_counter()
    model = trained(log=print)
    print(f"ready in {time.perf_counter() - start:.0f} s: {cache_dir()}")
    data = scenes(64)
    with torch.no_grad():
        out = np.concatenate([model(torch.from_numpy(data["images"][i : i + 16])).numpy() for i in range(0, 64, 16)])
    print(f"mAP@0.5 on 64 held-out scenes: {evaluate(out, data['labels']):.3f}")


if __name__ == "__main__":
    _main()
