"""Calibration (``--calib``) and verification (``--data``) data.

Every source becomes a ``Dataset``: one array per model input, keyed by input name, the
first axis indexing samples; optionally ``labels`` (first axis = samples). Sources:

- ``.npz``: arrays keyed by input name (a single-input model may use any one key), plus
  an optional ``labels`` array;
- ``.npy``: one array, for a single-input model;
- a folder of images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``), resized to the
  input's size, scaled to 0..1, normalised with mean/std, in RGB or BGR, NCHW or NHWC;
- ``random``: generated from the IO contract with a seed: for smoke runs only; the
  report then says accuracy numbers are not meaningful.

A sample has either the input's full shape (array rank = input rank + 1) or the input's
shape without its batch axis (array rank = input rank): then samples are fed in chunks
of the model's batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .model import IOContract, TensorSpec, format_shape

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Pillow opens a file by its content, whatever its name: a PostScript file named .png would start Ghostscript.
# Each file is opened only as the format its suffix names.
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}
LABELS = "labels"


@dataclass
class Preprocess:
    """How an image becomes a model input: ``((pixels * scale) - mean) / std``."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1 / 255
    bgr: bool = False
    layout: str | None = None  # NCHW / NHWC; default: the contract's, else guessed

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "channel_order": "BGR" if self.bgr else "RGB",
            "layout": self.layout,
        }


@dataclass
class Dataset:
    arrays: dict[str, np.ndarray]
    kind: str  # npz | npy | images | random
    source: str | None
    sha256: str
    labels: np.ndarray | None = None
    meaningful: bool = True
    batched: dict[str, bool] = field(default_factory=dict)  # False: a sample is a full input

    def __len__(self) -> int:
        return min(len(a) for a in self.arrays.values()) if self.arrays else 0

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
            "samples": len(self),
            "labels": self.labels is not None,
            "meaningful": self.meaningful,
        }

    def feeds(self, io: IOContract, limit: int | None = None) -> Iterator[tuple[dict[str, np.ndarray], slice]]:
        """Yield ``(feed, sample slice)``: each feed has the model's batch size."""
        n = len(self) if limit is None else min(limit, len(self))
        step = 1
        for spec in io.inputs:
            if self.batched.get(spec.name, True) and spec.shape and isinstance(spec.shape[0], int):
                step = max(step, spec.shape[0])
        for start in range(0, n - step + 1, step):
            feed = {}
            for spec in io.inputs:
                arr = self.arrays[spec.name]
                # arr[start, ...]: a 0-d array for a scalar input (arr[start] is a numpy scalar, or for strings a
                # Python str: onnxruntime refuses the first, adapt_inputs crashed on the second; found by the
                # operator coverage on BlackmanWindow / StringConcat scalars)
                feed[spec.name] = arr[start : start + step] if self.batched.get(spec.name, True) else arr[start, ...]
            yield feed, slice(start, start + step)


def _sha256_file(path: Path, h: Any | None = None) -> Any:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return _sha256_file(path).hexdigest()
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        _sha256_file(p, h)
    return h.hexdigest()


def _np_dtype(spec: TensorSpec) -> Any:
    import numpy as np

    try:
        return np.dtype(spec.dtype)
    except TypeError:
        return np.dtype("float32")


def load_dataset(
    source: str | Path | dict[str, Any] | None,
    io: IOContract,
    *,
    what: str = "--data",
    limit: int | None = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
    random_samples: int = 8,
) -> Dataset:
    """Load ``source`` for the inputs of ``io`` and check every shape and dtype."""
    import numpy as np

    if source is None or (isinstance(source, str) and source == "random"):
        ds = random_dataset(io, random_samples if limit is None else min(limit, random_samples), seed=seed)
        return ds
    if isinstance(source, dict):  # Python API: arrays in memory
        arrays = {k: np.asarray(v) for k, v in source.items()}
        labels = arrays.pop(LABELS, None)
        h = hashlib.sha256()
        for k in sorted(arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        ds = Dataset(arrays, "arrays", None, h.hexdigest(), labels=labels)
        return _check(ds, io, what, limit)

    path = Path(source)
    if not path.exists():
        raise BadInput(f"{what} path does not exist", file=path, stage="data")
    if path.is_dir():
        ds = _load_images(path, io, preprocess or Preprocess(), what)
    elif path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BadInput(f"{what} is not a readable .npz file ({type(exc).__name__}: {exc})", file=path, stage="data") from None
        labels = arrays.pop(LABELS, None)
        ds = Dataset(_match_keys(arrays, io, path, what), "npz", str(path), sha256_path(path), labels=labels)
    elif path.suffix.lower() == ".npy":
        if len(io.inputs) != 1:
            raise BadInput(f"{what}: a .npy file can only feed a single-input model; use .npz keyed by input name", file=path, stage="data")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise BadInput(f"{what} is not a readable .npy file ({type(exc).__name__}: {exc})", file=path, stage="data") from None
        ds = Dataset({io.inputs[0].name: arr}, "npy", str(path), sha256_path(path))
    else:
        raise BadInput(
            f"{what} must be an .npz or .npy file or a folder of images (got {path.suffix or 'no suffix'!r})",
            file=path,
            stage="data",
        )
    return _check(ds, io, what, limit)


def _match_keys(arrays: dict[str, Any], io: IOContract, path: Path, what: str) -> dict[str, Any]:
    names = [t.name for t in io.inputs]
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise BadInput(
            f"{what} has no array for input {missing[0]!r} (it holds: {', '.join(arrays) or 'nothing'})",
            file=path,
            stage="data",
        )
    return {n: arrays[n] for n in names}


def _check(ds: Dataset, io: IOContract, what: str, limit: int | None) -> Dataset:
    import numpy as np

    where = ds.source
    counts = set()
    for spec in io.inputs:
        arr = ds.arrays[spec.name]
        want = _np_dtype(spec)
        if arr.dtype != want:
            same_kind = (arr.dtype.kind == "f" and want.kind == "f") or (
                arr.dtype.kind in "iu" and want.kind in "iu"
            )
            if not same_kind:
                raise BadInput(
                    f"{what}: input {spec.name!r} is {arr.dtype}, the model expects {want}",
                    file=where,
                    stage="data",
                )
            arr = arr.astype(want)
        rank = len(spec.shape)
        if arr.ndim == rank + 1 and _fits(arr.shape[1:], spec.shape):
            ds.batched[spec.name] = False
        elif arr.ndim == rank and rank > 0 and _fits(arr.shape[1:], spec.shape[1:]):
            ds.batched[spec.name] = True
        else:
            raise BadInput(
                f"{what}: input {spec.name!r} holds an array of shape {format_shape(arr.shape)}; the model "
                f"expects samples of shape {format_shape(spec.shape)} (array [N,...] of those, or of "
                f"{format_shape(spec.shape[1:])} with N on the batch axis)",
                file=where,
                stage="data",
            )
        if not np.isfinite(arr).all() if arr.dtype.kind == "f" else False:
            raise BadInput(f"{what}: input {spec.name!r} contains NaN or Inf", file=where, stage="data")
        ds.arrays[spec.name] = arr if limit is None else arr[:limit]
        n, batch = len(ds.arrays[spec.name]), spec.shape[0] if spec.shape else None
        if ds.batched[spec.name] and isinstance(batch, int) and 0 < n < batch:
            # feeds() yields whole batches only: there would be nothing to run
            raise BadInput(
                f"{what}: input {spec.name!r} holds {n} sample(s), fewer than the model's fixed batch size {batch}",
                file=where,
                stage="data",
            )
        counts.add(n)
    if ds.labels is not None:
        ds.labels = check_labels(ds.labels, what, where)
        ds.labels = ds.labels if limit is None else ds.labels[:limit]
        counts.add(len(ds.labels))
    if len(counts) > 1:
        raise BadInput(f"{what}: the arrays hold different numbers of samples {sorted(counts)}", file=where, stage="data")
    if not counts or counts == {0}:
        raise BadInput(f"{what} holds no samples", file=where, stage="data")
    return ds


def _fits(shape: tuple[int, ...], spec: tuple[Any, ...]) -> bool:
    return len(shape) == len(spec) and all(not isinstance(d, int) or d <= 0 or d == s for s, d in zip(shape, spec))


def random_dataset(io: IOContract, n: int, *, seed: int = 0) -> Dataset:
    """Samples generated from the IO contract: shapes must be static but for batch."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in io.inputs:
        dyn = {i: d for i, d in spec.dynamic_axes.items() if i != 0}
        if dyn:
            axes = ", ".join(f"{d!r} (axis {i})" for i, d in dyn.items())
            raise BadInput(
                f"input {spec.name!r} has dynamic axes {axes}: give --input-shape "
                f"{spec.name}:{','.join(str(d) if isinstance(d, int) else '?' for d in spec.shape)} or --data",
                stage="data",
            )
        shape = (n, *spec.concrete_shape(1))
        dt = _np_dtype(spec)
        if dt.kind == "f":
            arr = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            arr = rng.integers(0, 10, shape).astype(dt)
        arrays[spec.name] = arr
    ds = Dataset(arrays, "random", None, f"random-seed-{seed}-n-{n}", meaningful=False)
    ds.batched = {name: False for name in arrays}
    return ds


def _load_images(folder: Path, io: IOContract, pre: Preprocess, what: str) -> Dataset:
    import numpy as np

    if len(io.inputs) != 1:
        raise BadInput(f"{what}: an image folder can only feed a single-input model", file=folder, stage="data")
    spec = io.inputs[0]
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise BadInput(f"{what}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})", file=folder, stage="data")
    if len(spec.shape) != 4:
        raise BadInput(f"{what}: input {spec.name!r} is not an image batch [N,C,H,W] or [N,H,W,C]", file=folder, stage="data")
    layout = pre.layout or spec.layout or guess_layout(spec.shape) or "NCHW"
    dims = spec.shape[1:]
    c, h, w = (dims[0], dims[1], dims[2]) if layout == "NCHW" else (dims[2], dims[0], dims[1])
    if not all(isinstance(d, int) and d > 0 for d in (c, h, w)):
        raise BadInput(
            f"{what}: input {spec.name!r} {format_shape(spec.shape)} has dynamic C/H/W: give --input-shape",
            file=folder,
            stage="data",
        )
    if c not in (1, 3):
        raise BadInput(
            f"{what}: input {spec.name!r} {format_shape(spec.shape)} read as {layout} has {c} channels; "
            "images give 1 (grey) or 3 (RGB/BGR) (check --layout)",
            file=folder,
            stage="data",
        )
    mean = np.array(pre.mean, dtype=np.float32).reshape(-1)
    std = np.array(pre.std, dtype=np.float32).reshape(-1)
    for opt, vals in (("--mean", mean), ("--std", std)):
        if len(vals) not in (1, c) or (opt == "--std" and not (vals != 0).all()):
            raise BadInput(
                f"{what}: {opt} {','.join(f'{v:g}' for v in vals)} must give 1 or {c} value(s)"
                f"{' (none of them 0)' if opt == '--std' else ''} for input {spec.name!r} with {c} channel(s)",
                file=folder,
                stage="data",
            )
    out = np.empty((len(files), h, w, c), dtype=np.float32)
    h_all = hashlib.sha256()
    for i, f in enumerate(files):
        px = _read_image(f, c, w, h, what)
        if pre.bgr and c == 3:
            px = px[..., ::-1]
        out[i] = (px * pre.scale - mean) / std
        h_all.update(f.name.encode())
        _sha256_file(f, h_all)
    arr = out.transpose(0, 3, 1, 2) if layout == "NCHW" else out
    h_all.update(repr(pre.to_dict()).encode())
    ds = Dataset({spec.name: np.ascontiguousarray(arr)}, "images", str(folder), h_all.hexdigest())
    return ds


def _read_image(f: Path, c: int, w: int, h: int, what: str) -> np.ndarray:
    """One image as float32 [h, w, c], opened only as the format its suffix names. A file that is not that format,
    is truncated, or decompresses past Pillow's limits (pixels, or text chunks: ``ValueError``) is bad input; the
    ``DecompressionBombWarning`` of a large but allowed image goes to the debug log, not the terminal."""
    import logging
    import warnings

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    fmt = IMAGE_FORMATS[f.suffix.lower()]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(f, formats=[fmt]) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                px = np.asarray(im, dtype=np.float32).reshape(h, w, c)
        for warning in caught:
            logging.getLogger("edgeconv").debug("%s: %s", f, warning.message)
    except UnidentifiedImageError:
        raise BadInput(f"{what}: not a {fmt} image (files are opened only as the format their suffix names)",
                       file=f, stage="data") from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError, EOFError) as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise BadInput(f"{what}: cannot read the {fmt} image ({text})", file=f, stage="data") from None
    return px


def check_labels(labels: Any, what: str, where: str | None) -> np.ndarray:
    """``labels`` must be numbers, one entry per sample (first axis), all finite: a scalar, strings, objects or
    NaN/Inf would make every accuracy figure (and ``--max-accuracy-drop``) meaningless."""
    import numpy as np

    arr = np.asarray(labels)
    if arr.ndim == 0:
        raise BadInput(f"{what}: 'labels' is a scalar; it needs one entry per sample (first axis = samples)",
                       file=where, stage="data")
    if arr.dtype.kind not in "biuf":
        raise BadInput(f"{what}: 'labels' holds {arr.dtype} values; labels are class indices (integers) or numbers",
                       file=where, stage="data")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BadInput(f"{what}: 'labels' contains NaN or Inf", file=where, stage="data")
    return arr


def guess_layout(shape: tuple[Any, ...]) -> str | None:
    """NCHW or NHWC for a 4-D image input, when the channel axis is evident."""
    if len(shape) != 4:
        return None
    c1, c3 = shape[1], shape[3]
    if isinstance(c1, int) and c1 in (1, 3, 4) and not (isinstance(c3, int) and c3 in (1, 3, 4)):
        return "NCHW"
    if isinstance(c3, int) and c3 in (1, 3, 4) and not (isinstance(c1, int) and c1 in (1, 3, 4)):
        return "NHWC"
    return None
