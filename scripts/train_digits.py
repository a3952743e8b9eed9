#!/usr/bin/env python3
"""Train the built-in edgeconv sample model (a small CNN on scikit-learn's digits).

Deterministic (fixed seeds, deterministic kernels, 2 threads), offline. Writes into
core/src/edgeconv/data/: digits_cnn.onnx (self-contained fp32; "input" float32
[batch,1,8,8] = pixels/16.0 -> "logits" float32 [batch,10]), digits_test.npz (held-out
split), digits_calib.npz (200 training samples for INT8 calibration), ATTRIBUTION.md.
Verifies the model (onnx.checker, onnxruntime) and reports INT8 (static QDQ) accuracy and
size of a temporary quantized copy.  Usage: python scripts/train_digits.py
"""
import io
import logging
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED, EPOCHS, BATCH, LR, N_CALIB = 0, 60, 64, 3e-3, 200
OUT = Path(__file__).resolve().parents[1] / "core" / "src" / "edgeconv" / "data"
NOTE = "edgeconv digits sample CNN, trained by scripts/train_digits.py"
PREPROC = "pixels/16.0, NCHW, 1x8x8"

torch.manual_seed(SEED)
np.random.seed(SEED)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(2)
warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
logging.getLogger().setLevel(logging.ERROR)  # ORT quantizer's "consider pre-processing" hint


def digits_cnn():
    """conv32-BN-ReLU, conv64-BN-ReLU, maxpool2, conv64-ReLU, global avg pool, fc10.
    56,490 params (~220 KB fp32): the weights dominate the file, so INT8 is ~0.29x."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),                                           # 8x8 -> 4x4
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def random_shift(x, gen):
    """Shift every image independently by -1..+1 px in x and y (zero fill)."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))                                # [n,1,10,10]
    dy, dx = torch.randint(0, 3, (2, n, 1, 1), generator=gen)    # offsets in padded image
    rows = (torch.arange(8).view(1, 8, 1) + dy).expand(n, 8, 8)
    cols = (torch.arange(8).view(1, 1, 8) + dx).expand(n, 8, 8)
    return padded[torch.arange(n).view(n, 1, 1), 0, rows, cols].unsqueeze(1)


def tidy_names(graph):
    """Short readable names (conv1, relu1, ...; weights conv1.w / conv1.b). Also keeps the
    names the INT8 quantizer derives from them, and hence its output file, small."""
    inits, rename, counts = {t.name for t in graph.initializer}, {}, {}
    for node in graph.node:
        op = node.op_type.lower()
        counts[op] = counts.get(op, 0) + 1
        node.name = f"{op}{counts[op]}"
        for j, name in enumerate(node.input):          # Conv/Gemm: 1 = weight, 2 = bias
            if name in inits:
                rename[name] = f"{node.name}.{'xwb'[j]}"
        rename.update({o: node.name for o in node.output if o != "logits"})
    for t in graph.initializer:
        t.name = rename.get(t.name, t.name)
    for node in graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]


def save_npz(path, **arrays):
    """Like np.savez_compressed, but byte-reproducible (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(key + ".npy", (1980, 1, 1, 0, 0, 0)),
                        buf.getvalue(), zipfile.ZIP_DEFLATED)


def ort_accuracy(path, x, y):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((sess.run(["logits"], {"input": x})[0].argmax(1) == y).mean())


class CalibReader(CalibrationDataReader):
    def __init__(self, x, batch=20):
        self.it = iter([{"input": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.it, None)


def main():
    # --- data: fixed stratified split, pixels 0..16 scaled to 0..1, NCHW ---
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]        # [1797,1,8,8]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    x_calib = x_tr[np.sort(np.random.RandomState(SEED).choice(len(x_tr), N_CALIB, False))]

    # --- training: Adam + one-cycle LR schedule, random +-1 px shifts ---
    model = digits_cnn()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=EPOCHS * -(-len(x_tr) // BATCH))
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(EPOCHS):
        perm, total = torch.randperm(len(xt), generator=gen), 0.0
        for i in range(0, len(xt), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(random_shift(xt[idx], gen)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(xt):.4f}")
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())

    # --- export: one self-contained ONNX file (TorchScript exporter folds BN into conv) ---
    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "digits_cnn.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(onnx_path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(str(onnx_path))
    tidy_names(m.graph)
    m.doc_string = NOTE
    for k, v in {"producer_note": NOTE, "preprocessing": PREPROC, "labels": "0,1,2,3,4,5,6,7,8,9",
                 "dataset": "sklearn load_digits (UCI optdigits), 30% stratified test split",
                 "test_accuracy": f"{torch_acc:.4f}"}.items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(onnx_path))
    save_npz(OUT / "digits_test.npz", input=x_te, labels=y_te)
    save_npz(OUT / "digits_calib.npz", input=x_calib)

    # --- verify with onnxruntime, then INT8 static QDQ quantization of a temporary copy ---
    fp32_acc = ort_accuracy(onnx_path, x_te, y_te)
    assert abs(fp32_acc - torch_acc) < 1e-9, f"ORT {fp32_acc} != torch {torch_acc}"
    with tempfile.TemporaryDirectory() as tmp:
        q_path = Path(tmp) / "digits_cnn_int8.onnx"
        quantize_static(str(onnx_path), str(q_path), CalibReader(x_calib),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        int8_acc = ort_accuracy(q_path, x_te, y_te)
        ratio = q_path.stat().st_size / onnx_path.stat().st_size

    sizes = {p.name: p.stat().st_size for p in sorted(OUT.glob("digits_*"))}
    (OUT / "ATTRIBUTION.md").write_text(f"""# Built-in sample model and data

## Data
`digits_test.npz` and `digits_calib.npz` are derived from the scikit-learn copy
(`sklearn.datasets.load_digits`, BSD-3-Clause) of the UCI "Optical Recognition of
Handwritten Digits" dataset (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0): 1797 8x8 grey
images, 10 classes. Pixels (0..16) are scaled to 0..1 (`{PREPROC}`). Split:
`train_test_split(test_size=0.3, random_state=0, stratify=y)`.

- `digits_test.npz`: held-out test split, `input` float32 {list(x_te.shape)}, `labels` int64
  [{len(y_te)}]
- `digits_calib.npz`: {N_CALIB} training-split samples for INT8 calibration, `input` float32
  {list(x_calib.shape)}

## Model
`digits_cnn.onnx` (opset 17; input `input` float32 [batch,1,8,8], output `logits` float32
[batch,10]): a {n_params:,}-parameter CNN whose weights were trained from scratch by
`scripts/train_digits.py` (deterministic; {EPOCHS} epochs Adam, +-1 px shift augmentation).
Test accuracy (onnxruntime): fp32 {fp32_acc:.2%} ({round(fp32_acc * len(y_te))}/{len(y_te)}),
INT8 static QDQ per-channel {int8_acc:.2%}.

## Sizes (bytes)
""" + "".join(f"- `{k}`: {v:,}\n" for k, v in sizes.items()))

    print(f"\nparameters {n_params:,} | training {train_s:.1f} s wall, {train_cpu:.1f} s CPU\n"
          f"test accuracy: torch {torch_acc:.4f} | ORT fp32 {fp32_acc:.4f} | ORT int8 "
          f"{int8_acc:.4f} (drop {100 * (fp32_acc - int8_acc):.2f} pp) | int8/fp32 {ratio:.3f}")
    print("\n".join(f"{k:17s}{v:9,} bytes" for k, v in sizes.items()))
    assert fp32_acc >= 0.985, f"fp32 accuracy too low: {fp32_acc:.4f}"
    assert fp32_acc - int8_acc <= 0.003 and ratio <= 0.3, "INT8 targets missed"


if __name__ == "__main__":
    main()
