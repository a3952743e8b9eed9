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

Labels: for the classification accuracy, one class index per sample ([N] or [N, 1], integers
or integral floats); a task check (``--task``) reads its own format (detection boxes
[N, M, 5], CTC sequences [N, L], masks [N, H, W]: docs/fidelity.md).

Sequences (a streaming model verified with ``--state IN:OUT``): every input that is not a
state holds [N, T, *input shape] (or [N, T, *input shape without its batch axis]): N
sequences of T steps. A state input may hold the initial state of each sequence
([N, *state shape] or [N, *state shape without batch]); else it starts at zeros. Each step
feeds the state output of the step before.

Without ``--data``, verification draws on the calibration set when one is given
(``verification_from_calibration``): its samples the calibration did not use, else samples
drawn from it; N(0,1) noise only when nothing else is known.
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
    preprocess: Preprocess | None = None  # images: how they were read (to read the folder again)
    note: str | None = None  # how the samples were made, when not read as given (calibration-distributed)
    steps: int | None = None  # sequences: T steps per sample (``--state``)
    states: tuple[str, ...] = ()  # sequences: the state inputs (their arrays: initial states, may be absent)

    def __len__(self) -> int:
        arrays = [a for k, a in self.arrays.items() if k not in self.states] or list(self.arrays.values())
        return min(len(a) for a in arrays) if arrays else 0

    def describe(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
            "samples": len(self),
            "labels": self.labels is not None,
            "meaningful": self.meaningful,
        }
        if self.note:
            out["note"] = self.note
        if self.steps is not None:
            out.update(sequences=len(self), steps=self.steps, state_inputs=list(self.states))
        return out

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

    def sequences(self, io: IOContract, limit: int | None = None
                  ) -> Iterator[tuple[dict[str, np.ndarray | None], list[dict[str, np.ndarray]]]]:
        """Yield ``(initial states, steps)`` per sequence: the state inputs' first values (None: zeros) and one feed
        of the streamed inputs per step, each at batch 1."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            init = {}
            for name in self.states:
                arr = self.arrays.get(name)
                init[name] = None if arr is None else (arr[i : i + 1] if self.batched.get(name) else arr[i])
            steps = []
            for t in range(self.steps or 0):
                steps.append({spec.name: (self.arrays[spec.name][i, t][None] if self.batched.get(spec.name)
                                          else self.arrays[spec.name][i, t])
                              for spec in io.inputs if spec.name not in self.states})
            yield init, steps


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
    states: Any = (),
) -> Dataset:
    """Load ``source`` for the inputs of ``io`` and check every shape and dtype. ``states``: the state inputs of a
    streaming model (``--state``): the other inputs then hold sequences [N, T, ...] (see the module's doc)."""
    import numpy as np

    states = tuple(states or ())
    if source is None or (isinstance(source, str) and source == "random"):
        n = random_samples if limit is None else min(limit, random_samples)
        return random_sequences(io, states, n, seed=seed) if states else random_dataset(io, n, seed=seed)
    if isinstance(source, dict):  # Python API: arrays in memory
        arrays = {k: np.asarray(v) for k, v in source.items()}
        labels = arrays.pop(LABELS, None)
        h = hashlib.sha256()
        for k in sorted(arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        if states:
            return _check_sequences(Dataset(_match_keys(arrays, io, None, what, states), "arrays", None,
                                            h.hexdigest(), labels=labels), io, states, what, limit)
        ds = Dataset(arrays, "arrays", None, h.hexdigest(), labels=labels)
        return _check(ds, io, what, limit)

    path = Path(source)
    if not path.exists():
        raise BadInput(f"{what} path does not exist", file=path, stage="data")
    if states and (path.is_dir() or path.suffix.lower() != ".npz"):
        raise BadInput(f"{what}: a streaming model's sequences (--state) come in an .npz keyed by input name",
                       file=path, stage="data")
    if path.is_dir():
        ds = _load_images(path, io, preprocess or Preprocess(), what)
    elif path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BadInput(f"{what} is not a readable .npz file ({type(exc).__name__}: {exc})", file=path, stage="data") from None
        labels = arrays.pop(LABELS, None)
        ds = Dataset(_match_keys(arrays, io, path, what, states), "npz", str(path), sha256_path(path), labels=labels)
        if states:
            return _check_sequences(ds, io, states, what, limit)
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


def _match_keys(arrays: dict[str, Any], io: IOContract, path: Path | None, what: str,
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
    names = [t.name for t in io.inputs]
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays and n not in optional]
    if missing:
        raise BadInput(
            f"{what} has no array for input {missing[0]!r} (it holds: {', '.join(arrays) or 'nothing'})",
            file=path,
            stage="data",
        )
    return {n: arrays[n] for n in names if n in arrays}


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
    return len(shape) == len(spec) and all(not isinstance(d, int) or d <= 0 or d == s for s, d in zip(shape, spec, strict=True))


def random_dataset(io: IOContract, n: int, *, seed: int = 0) -> Dataset:
    """Samples generated from the IO contract: shapes must be static but for batch."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in io.inputs:
        dyn = {i: d for i, d in spec.dynamic_axes.items() if i != 0}
        if dyn:
            axes = ", ".join(f"{d!r} (axis {i})" for i, d in dyn.items())
            pair = dict(state_pairs(io)).get(spec.name)
            raise BadInput(
                f"input {spec.name!r} has dynamic axes {axes}: give --input-shape "
                f"{spec.name}:{','.join(str(d) if isinstance(d, int) else '?' for d in spec.shape)} or --data"
                + (f" (it looks like a streaming model's state: with --state {spec.name}:{pair} it starts at zeros "
                   "of the pinned shape and is carried from step to step)" if pair else ""),
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
    return Dataset({spec.name: np.ascontiguousarray(arr)}, "images", str(folder), h_all.hexdigest(), preprocess=pre)


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


# -- sequences (a streaming model's carried state) -------------------------------------------------------------
def _check_sequences(ds: Dataset, io: IOContract, states: tuple[str, ...], what: str, limit: int | None) -> Dataset:
    """Streamed inputs [N, T, *shape] (or without the batch axis), state inputs' initial values [N, *shape]."""
    import numpy as np

    where, counts, steps = ds.source, set(), set()
    for spec in io.inputs:
        arr = ds.arrays.get(spec.name)
        if arr is None:
            continue
        want = _np_dtype(spec)
        if arr.dtype != want:
            if not ((arr.dtype.kind == "f" and want.kind == "f") or (arr.dtype.kind in "iu" and want.kind in "iu")):
                raise BadInput(f"{what}: input {spec.name!r} is {arr.dtype}, the model expects {want}", file=where,
                               stage="data")
            arr = arr.astype(want)
        rank, lead = len(spec.shape), (1 if spec.name in states else 2)
        if arr.ndim == rank + lead and _fits(arr.shape[lead:], spec.shape):
            ds.batched[spec.name] = False
        elif arr.ndim == rank + lead - 1 and rank > 0 and _fits(arr.shape[lead:], spec.shape[1:]):
            ds.batched[spec.name] = True
        else:
            form = "[N, *state]: an initial state per sequence" if lead == 1 else "[N, T, *input]: N sequences of T steps"
            raise BadInput(f"{what}: input {spec.name!r} holds an array of shape {format_shape(arr.shape)}; a "
                           f"{'state' if lead == 1 else 'streamed'} input of shape {format_shape(spec.shape)} takes "
                           f"{form} (with or without the batch axis)", file=where, stage="data")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BadInput(f"{what}: input {spec.name!r} contains NaN or Inf", file=where, stage="data")
        ds.arrays[spec.name] = arr if limit is None else arr[:limit]
        counts.add(len(ds.arrays[spec.name]))
        if lead == 2:
            steps.add(arr.shape[1])
    if len(counts) > 1 or len(steps) > 1:
        raise BadInput(f"{what}: the sequences differ in number {sorted(counts)} or length {sorted(steps)}",
                       file=where, stage="data")
    if not counts or counts == {0} or steps == {0}:
        raise BadInput(f"{what} holds no sequences", file=where, stage="data")
    ds.steps, ds.states = steps.pop(), states
    _initial_states(io, states, ds.arrays, what, where)
    if ds.labels is not None:
        ds.labels = check_labels(ds.labels, what, where)
    return ds


def _initial_states(io: IOContract, states: tuple[str, ...], arrays: dict[str, Any], what: str,
                    where: str | None) -> None:
    for name in states:
        spec = io.input(name)
        if name not in arrays and any(isinstance(d, str) for d in spec.shape[1:]):
            raise BadInput(f"{what}: state input {name!r} {format_shape(spec.shape)} has dynamic axes: give its "
                           f"initial state in the data (key {name!r}, [N, *state]) or its shape with --input-shape",
                           file=where, stage="data")


def random_sequences(io: IOContract, states: tuple[str, ...], n: int, *, steps: int = 8, seed: int = 0) -> Dataset:
    """``n`` sequences of ``steps`` steps generated from the IO contract (the states start at zeros)."""
    streamed = IOContract(inputs=tuple(t for t in io.inputs if t.name not in states), outputs=io.outputs)
    flat = random_dataset(streamed, n * steps, seed=seed)
    arrays = {k: v.reshape(n, steps, *v.shape[1:]) for k, v in flat.arrays.items()}
    _initial_states(io, states, arrays, "--state", None)
    ds = Dataset(arrays, "random", None, f"random-seed-{seed}-n-{n}x{steps}", meaningful=False, steps=steps,
                 states=states)
    ds.batched = {name: False for name in arrays}
    return ds


def state_pairs(io: IOContract) -> list[tuple[str, str]]:
    """Inputs that look like a carried state: an output of the same rank whose name holds the input's stem (state ->
    stateN, h0 -> hn, cache_in -> cache_out, past_key -> present_key); the shapes may differ when a wrong
    ``--input-shape`` pin is the problem being explained."""
    import re

    out: list[tuple[str, str]] = []
    for t in io.inputs:
        stem = re.sub(r"^(past|prev)_?|_?(in|0|prev)$", "", t.name.lower())
        for o in io.outputs:
            if o.name != t.name and len(o.shape) == len(t.shape) and stem and stem in o.name.lower():
                out.append((t.name, o.name))
                break
    return out


def zero_state(spec: TensorSpec) -> np.ndarray:
    """A state input's start: zeros of its shape (dynamic batch 1)."""
    import numpy as np

    return np.zeros(spec.concrete_shape(1), dtype=_np_dtype(spec))


# -- labels ------------------------------------------------------------------------------------------------------
def check_class_labels(labels: Any, what: str = "--data", where: str | None = None) -> np.ndarray:
    """Labels as one class index per sample ([N] or [N, 1]; integers, or floats that are integral): what the
    classification accuracy compares against. Anything else (one-hot rows, boxes, masks, 0.5) is refused: it would
    give an accuracy figure that means nothing."""
    import numpy as np

    arr = check_labels(labels, what, where)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise BadInput(f"{what}: 'labels' of shape {format_shape(arr.shape)} are not one class index per sample ([N] "
                       "or [N, 1]); boxes, masks or sequences need --task detection/segmentation/ctc", file=where,
                       stage="data")
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)):
            raise BadInput(f"{what}: 'labels' hold non-integral values (e.g. {arr[arr != np.round(arr)][0]:g}); "
                           "class labels are class indices", file=where, stage="data")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise BadInput(f"{what}: 'labels' hold a negative class index ({int(arr.min())})", file=where, stage="data")
    return arr


# -- verification inputs from the calibration set -------------------------------------------------------------
MIN_HELD_OUT = 16  # fewer held-out calibration samples than this: draw samples instead


def verification_from_calibration(calib: Any, io: IOContract, n: int, *, seed: int = 0) -> Dataset | None:
    """Verification inputs distributed like the calibration set (``--calib`` without ``--data``): the samples of its
    source the calibration did not use when there are at least ``MIN_HELD_OUT``, else ``n`` samples drawn from it
    (a smoothed bootstrap: a calibration sample plus Gaussian noise of a tenth of each value's spread, clipped to
    the values' range). None for random calibration (nothing is known)."""
    if calib is None or (isinstance(calib, str) and calib == "random"):
        return None
    used = None
    if isinstance(calib, Dataset):
        if not calib.meaningful:
            return None
        used, full = len(calib), _reload(calib, io)
    else:
        full = load_dataset(calib, io, what="--calib")
        used = 0  # loaded only now: the conversion did not calibrate on it
    if full is not None and len(full) - used >= MIN_HELD_OUT:
        held = _subset(full, used, used + n)
        held.kind = "calibration-held-out"
        held.note = (f"no --data: verified on {len(held)} calibration samples the calibration did not use "
                     f"(samples {used}..{used + len(held) - 1} of {len(full)})")
        held.labels = None
        return held
    base = calib if isinstance(calib, Dataset) else full
    return _drawn(base, n, seed)


def _reload(ds: Dataset, io: IOContract) -> Dataset | None:
    """The whole source of a calibration set (it may have been cut at the target's ``calib_limit``)."""
    if not ds.source or ds.kind not in ("npz", "npy", "images"):
        return None
    try:
        return load_dataset(ds.source, io, what="--calib", preprocess=ds.preprocess)
    except BadInput:
        return None


def _subset(ds: Dataset, start: int, stop: int) -> Dataset:
    arrays = {k: v[start:stop] for k, v in ds.arrays.items()}
    return Dataset(arrays, ds.kind, ds.source, ds.sha256, batched=dict(ds.batched), preprocess=ds.preprocess)


def _drawn(calib: Dataset, n: int, seed: int) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(calib), n)
    arrays = {}
    for name, arr in calib.arrays.items():
        x = arr[pick]
        if arr.dtype.kind == "f":
            lo, hi = arr.min(axis=0), arr.max(axis=0)
            x = np.clip(x + rng.standard_normal(x.shape) * (0.1 * arr.std(axis=0)), lo, hi).astype(arr.dtype)
        arrays[name] = x
    note = (f"no --data: verified on {n} samples drawn from the {len(calib)} calibration samples (each a calibration "
            "sample plus Gaussian noise of 0.1x each value's spread, within its range): the calibration "
            "distribution, not held-out data; give --data for accuracy")
    return Dataset(arrays, "calibration-drawn", calib.source, f"{calib.sha256}-drawn-{seed}-{n}",
                   batched=dict(calib.batched), note=note)
