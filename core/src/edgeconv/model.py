"""A model in one form, on disk (or in memory), and its IO contract.

The IO contract is what a caller of the model must know: input and output names,
shapes with named dynamic axes, dtypes, layout, and the preprocessing a sample needs.
A conversion may change it (NCHW -> NHWC, int8 IO with scale/zero-point); the
artifact's contract is recorded in its manifest so that nobody gets a layout surprise.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import BadInput

Dim = int | str  # a fixed size, or the name of a dynamic axis


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "int64", "uint8", ...
    layout: str | None = None  # "NCHW", "NHWC", "NC", ... when known
    # For quantized IO: real = (q - zero_point) * scale; per tensor, or a list per channel
    # (on the layout's C axis, e.g. an NPU's image preprocessing folded into the model)
    scale: float | list[float] | None = None
    zero_point: int | float | list[float] | None = None

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    @property
    def is_static(self) -> bool:
        return not self.dynamic_axes

    def concrete_shape(self, default: int = 1) -> tuple[int, ...]:
        """The shape with every dynamic axis set to ``default``."""
        return tuple(d if isinstance(d, int) else default for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(**{**d, "shape": tuple(d["shape"])})


@dataclass(frozen=True)
class IOContract:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "preprocessing": dict(self.preprocessing),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IOContract:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            preprocessing=dict(d.get("preprocessing", {})),
        )

    def pinned(self, shapes: dict[str, tuple[int, ...]], *, file: str | None = None) -> IOContract:
        """Pin dynamic axes of inputs to the given shapes (``--input-shape``).

        A fixed axis may only be "pinned" to its own size: a contradiction is an error.
        """
        unknown = set(shapes) - {t.name for t in self.inputs}
        if unknown:
            names = ", ".join(t.name for t in self.inputs)
            raise BadInput(
                f"--input-shape names {sorted(unknown)[0]!r}, but the model's inputs are: {names}",
                file=file,
                stage="import",
            )
        new = []
        for t in self.inputs:
            if t.name not in shapes:
                new.append(t)
                continue
            shape = shapes[t.name]
            if len(shape) != len(t.shape):
                raise BadInput(
                    f"--input-shape {t.name}:{','.join(map(str, shape))} has rank {len(shape)}, "
                    f"the model's input has rank {len(t.shape)} {_fmt(t.shape)}",
                    file=file,
                    stage="import",
                )
            for want, have in zip(shape, t.shape):
                if isinstance(have, int) and have > 0 and want != have:
                    raise BadInput(
                        f"--input-shape {t.name}:{','.join(map(str, shape))} contradicts the "
                        f"model's fixed shape {_fmt(t.shape)}",
                        file=file,
                        stage="import",
                    )
            new.append(replace(t, shape=tuple(shape)))
        return replace(self, inputs=tuple(new))


def _fmt(shape: tuple[Dim, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def format_shape(shape: tuple[Dim, ...]) -> str:
    return _fmt(shape)


@dataclass
class Model:
    """A model in one form (``onnx``, ``torch``, ``tf``, ``tflite``, ``openvino``, ...).

    ``path`` is where it lives on disk (a file or a folder); ``obj`` holds an in-memory
    object when there is one (an ``onnx.ModelProto``, an ``nn.Module``).
    """

    form: str
    io: IOContract
    path: Path | None = None
    obj: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = str(self.path) if self.path else "<in memory>"
        return f"{self.form} model {where}"


_SHAPE_RE = re.compile(r"^(?P<name>[^:]+):(?P<dims>[0-9x,]+)$")


def parse_input_shapes(specs: list[str] | tuple[str, ...] | None) -> dict[str, list[tuple[int, ...]]]:
    """Parse ``--input-shape`` values.

    ``name:1,3,224,224`` pins one shape. ``name:1x3x224x224,8x3x224x224,32x3x224x224``
    gives a (min, opt, max) profile for targets that build for a range of shapes.
    Returns a list of shapes per input name (one entry, or three for a profile).
    """
    out: dict[str, list[tuple[int, ...]]] = {}
    for spec in specs or ():
        m = _SHAPE_RE.match(spec.strip())
        if not m:
            raise BadInput(
                f"--input-shape {spec!r} is not NAME:D1,D2,... (or NAME:AxBxC,... for a profile)",
                stage="options",
            )
        name, dims = m["name"], m["dims"]
        try:
            if "x" in dims:
                shapes = [tuple(int(d) for d in s.split("x")) for s in dims.split(",")]
            else:
                shapes = [tuple(int(d) for d in dims.split(","))]
        except ValueError:
            raise BadInput(f"--input-shape {spec!r} has an empty dimension", stage="options") from None
        if any(d <= 0 for s in shapes for d in s):
            raise BadInput(f"--input-shape {spec!r}: every dimension must be > 0", stage="options")
        if len(shapes) not in (1, 3) or len({len(s) for s in shapes}) != 1:
            raise BadInput(
                f"--input-shape {spec!r}: give one shape, or three of one rank (min,opt,max)",
                stage="options",
            )
        out[name] = shapes
    check_shape_sizes(out)
    return out


MAX_DIM = 1 << 20  # one axis: a million
MAX_ELEMENTS = 1 << 30  # one input: 4 GiB of float32


def check_shape_sizes(profiles: dict[str, list[tuple[int, ...]]]) -> None:
    """Refuse absurd shapes before anything allocates them: an axis over a million, or an input of over 2**30
    elements (4 GiB as float32), is a typo, not a model (it used to end in a MemoryError or a kill)."""
    import math

    for name, shapes in profiles.items():
        for shape in shapes:
            if len(shape) > 16:
                raise BadInput(f"--input-shape {name}: rank {len(shape)} is more than 16 axes", stage="options")
            big = [d for d in shape if d > MAX_DIM]
            if big or math.prod(shape) > MAX_ELEMENTS:
                raise BadInput(f"--input-shape {name}:{','.join(map(str, shape))} is too large (an axis over "
                               f"{MAX_DIM:,} or over {MAX_ELEMENTS:,} elements in all)", stage="options")


def pinned_shapes(profiles: dict[str, list[tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    """The shape each input is verified at: the single shape, or a profile's 'opt'."""
    return {name: shapes[len(shapes) // 2] for name, shapes in profiles.items()}
