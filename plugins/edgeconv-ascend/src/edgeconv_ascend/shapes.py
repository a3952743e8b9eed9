"""``--input_shape`` and the dynamic gears (``--dynamic_batch_size`` / ``--dynamic_image_size`` /
``--dynamic_dims``) from the IO contract, ``--input-shape`` and the options.

ATC's guide (CANN 8.0-9.0, ``--input_shape`` and the three gear parameters): shapes are
``"name1:n,c,h,w;name2:n,c,h,w"``; a dynamic axis is ``-1`` and takes its sizes from exactly one gear parameter:

- ``--dynamic_batch_size="1,2,4,8"``: -1 only on axis 0 (N first), gears (1, 100], each 1..2048 advised;
- ``--dynamic_image_size="h,w;h,w"``: -1 on H and W, ``--input_format`` NCHW or NHWC;
- ``--dynamic_dims="d,d;d,d"``: the values fill the -1 of every input in order, ``--input_format=ND``, at most
  4 dynamic dims; not with ``--insert_op_conf`` (AIPP).

The three are mutually exclusive. Gears come from the options, else from an ``--input-shape`` profile
(``name:MINxCxHxW,OPTx...,MAXx...``): varying only the batch gives batch gears, only H and W image gears,
anything else dims gears. Without either, a dynamic batch axis is built for 1 (with a warning) and any other
dynamic axis is an error asking for ``--input-shape``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeconv.plugin import BadInput, IOContract, format_shape

MAX_GEARS = 100


@dataclass
class Shapes:
    inputs: list[tuple[str, tuple[int, ...]]]  # -1 marks a dynamic axis
    input_format: str
    dynamic: tuple[str, str] | None = None  # ("dynamic_batch_size", "1,2,4") ...
    gears: list[dict[str, tuple[int, ...]]] = field(default_factory=list)  # every gear's concrete shapes

    def input_shape_arg(self) -> str:
        return ";".join(f"{name}:{','.join(str(d) for d in dims)}" for name, dims in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": self.input_shape_arg(), "input_format": self.input_format,
                "dynamic": dict([self.dynamic]) if self.dynamic else None,
                "gears": [{k: list(v) for k, v in g.items()} for g in self.gears]}


def layout_of(spec) -> str | None:
    from edgeconv.plugin import guess_layout

    return spec.layout or guess_layout(spec.shape)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not a comma-separated list of integers", stage="options") from None
    if not values or any(v <= 0 for v in values):
        raise BadInput(f"{what}: {text!r} needs positive integers", stage="options")
    return values


def _gear_list(text: str, what: str, width: int | None) -> list[tuple[int, ...]]:
    gears = [_ints(g, what) for g in str(text).split(";") if g.strip()]
    if width is not None and any(len(g) != width for g in gears):
        raise BadInput(f"{what} {text!r}: every gear needs {width} value(s)", stage="options")
    _check_count(len(gears), what)
    return gears


def _check_count(n: int, what: str) -> None:
    if not 1 < n <= MAX_GEARS:
        raise BadInput(f"{what}: ATC takes 2 to {MAX_GEARS} gears (got {n})", stage="options")


def resolve(io: IOContract, profiles: dict[str, list[tuple[int, ...]]] | None, options: dict[str, Any],
            warn=lambda msg: None, aipp: bool = False) -> Shapes:
    profiles = dict(profiles or {})
    fmt_opt = str(options.get("input_format") or "auto")
    layouts = {t.name: layout_of(t) for t in io.inputs}
    if fmt_opt == "auto":
        found = {lay for lay in layouts.values() if lay in ("NCHW", "NHWC")}
        input_format = found.pop() if len(found) == 1 and all(len(t.shape) == 4 for t in io.inputs) else "ND"
    else:
        input_format = fmt_opt
    try:
        batch = tuple(int(b) for b in options.get("dynamic_batch") or ())
    except ValueError:
        raise BadInput(f"-O dynamic_batch={','.join(map(str, options['dynamic_batch']))}: batch sizes are integers, "
                       "e.g. 1,2,4,8", stage="options") from None
    image = str(options.get("dynamic_image_size") or "")
    dims = str(options.get("dynamic_dims") or "")
    given = [n for n, v in (("dynamic_batch", batch), ("dynamic_image_size", image), ("dynamic_dims", dims)) if v]
    if len(given) > 1:
        raise BadInput(f"-O {given[0]} and -O {given[1]} cannot be combined: ATC takes one kind of gear "
                       "(--dynamic_batch_size, --dynamic_image_size or --dynamic_dims)", stage="options")

    # Each input's shape at the pinned/opt size, and which axes a profile varies.
    base: dict[str, list[Any]] = {t.name: list(t.shape) for t in io.inputs}
    varying: dict[str, list[int]] = {}
    for t in io.inputs:
        shapes = profiles.get(t.name) or []
        if len(shapes) == 3:
            lo, _, hi = shapes
            varying[t.name] = [i for i, (a, b) in enumerate(zip(lo, hi, strict=True)) if a != b]
    kind, gears_spec = None, None
    if batch:
        kind, gears_spec = "batch", list(batch)
        _check_count(len(batch), "-O dynamic_batch")
    elif image:
        kind, gears_spec = "image", _gear_list(image, "-O dynamic_image_size", 2)
    elif dims:
        kind, gears_spec = "dims", _gear_list(dims, "-O dynamic_dims", None)
    elif any(varying.values()):
        kind = _kind_from_profiles(io, varying, layouts)
    dyn_axes: dict[str, list[int]] = {}
    if kind == "batch":
        targets = [t for t in io.inputs if t.shape and (isinstance(t.shape[0], str) or 0 in varying.get(t.name, []))]
        if not targets and batch:
            targets = [t for t in io.inputs if t.shape]
            warn("-O dynamic_batch: no input has a dynamic batch axis; ATC is asked to vary axis 0 of every input")
        dyn_axes = {t.name: [0] for t in targets}
        if gears_spec is None:
            gears_spec = sorted({s[0] for t in targets for s in profiles.get(t.name, [])})
            _check_count(len(gears_spec), f"--input-shape profile batch sizes {gears_spec}")
        if any(not 1 <= g <= 2048 for g in gears_spec):
            warn(f"batch gears {gears_spec}: ATC's guide advises 1..2048 per gear")
    elif kind == "image":
        if input_format not in ("NCHW", "NHWC"):
            raise BadInput("dynamic image size needs --input_format NCHW or NHWC (ATC); the inputs are "
                           f"{input_format}: use -O dynamic_dims", stage="options")
        hw = (2, 3) if input_format == "NCHW" else (1, 2)
        targets = [t for t in io.inputs if len(t.shape) == 4 and (
            any(isinstance(t.shape[i], str) for i in hw) or set(hw) & set(varying.get(t.name, [])))]
        if not targets:
            targets = [t for t in io.inputs if len(t.shape) == 4]
        dyn_axes = {t.name: list(hw) for t in targets}
        if gears_spec is None:
            t0 = targets[0]
            gears_spec = list(dict.fromkeys((s[hw[0]], s[hw[1]]) for s in profiles[t0.name]))
            _check_count(len(gears_spec), "--input-shape profile image sizes")
    elif kind == "dims":
        if aipp:
            raise BadInput("dynamic dims cannot be combined with AIPP: ATC refuses --dynamic_dims with "
                           "--insert_op_conf", stage="options")
        if fmt_opt not in ("auto", "ND"):
            raise BadInput(f"dynamic dims need --input_format ND (ATC), not -O input_format={fmt_opt}", stage="options")
        input_format = "ND"
        for t in io.inputs:
            axes = sorted(set(varying.get(t.name, [])) | {i for i, d in enumerate(t.shape) if isinstance(d, str)})
            if axes:
                dyn_axes[t.name] = axes
        count = sum(len(a) for a in dyn_axes.values())
        if gears_spec is None:
            order = [(t.name, i) for t in io.inputs for i in dyn_axes.get(t.name, [])]
            gears_spec = list(dict.fromkeys(tuple(profiles[n][k][i] for n, i in order) for k in range(3)))
            _check_count(len(gears_spec), "--input-shape profile shapes")
        if count == 0:
            raise BadInput("-O dynamic_dims: no input has a dynamic axis to fill; pin the model's axes with "
                           "--input-shape NAME:D,-1 is not possible, so give a min,opt,max profile", stage="options")
        if any(len(g) != count for g in gears_spec):
            raise BadInput(f"-O dynamic_dims: each gear needs {count} value(s), one per dynamic axis of the inputs "
                           f"({_axes_text(dyn_axes)})", stage="options")
        if count > 4:
            warn(f"{count} dynamic dims: ATC's guide supports at most 4 per gear")
    if kind == "image" and aipp:
        raise BadInput("dynamic image size with AIPP is not supported by edgeconv (static AIPP needs the source "
                       "image size)", stage="options")

    inputs: list[tuple[str, tuple[int, ...]]] = []
    for t in io.inputs:
        dims_out = []
        for axis, d in enumerate(base[t.name]):
            if axis in dyn_axes.get(t.name, []):
                dims_out.append(-1)
            elif isinstance(d, int):
                dims_out.append(d)
            elif axis == 0:
                dims_out.append(1)
                warn(f"input {t.name!r} has a dynamic batch axis {d!r}: the .om is built for batch 1; give "
                     f"-O dynamic_batch=1,2,4,8 or an --input-shape {t.name}:1x...,8x...,32x... profile for gears")
            else:
                raise BadInput(
                    f"input {t.name!r} {format_shape(t.shape)} has a dynamic axis {axis} ({d!r}): ATC needs its size; "
                    f"give --input-shape {t.name}:{','.join(str(x) if isinstance(x, int) else '?' for x in t.shape)} "
                    "or gears (-O dynamic_dims, or a min,opt,max profile)", stage="options")
        if ";" in t.name:
            raise BadInput(f"input name {t.name!r} cannot be written in ATC's --input_shape (';' separates the "
                           "inputs): rename the input", stage="options")
        inputs.append((t.name, tuple(dims_out)))

    shapes = Shapes(inputs, input_format)
    if kind is not None:
        if kind == "batch":
            shapes.dynamic = ("dynamic_batch_size", ",".join(str(g) for g in gears_spec))
        elif kind == "image":
            shapes.dynamic = ("dynamic_image_size", ";".join(f"{h},{w}" for h, w in gears_spec))
        else:
            shapes.dynamic = ("dynamic_dims", ";".join(",".join(str(v) for v in g) for g in gears_spec))
        shapes.gears = _gear_shapes(inputs, kind, gears_spec, dyn_axes)
    return shapes


def _axes_text(dyn_axes: dict[str, list[int]]) -> str:
    return "; ".join(f"{name} axes {axes}" for name, axes in dyn_axes.items())


def _kind_from_profiles(io, varying, layouts) -> str:
    axes = {tuple(v) for v in varying.values() if v}
    if axes == {(0,)}:
        return "batch"
    hw = {"NCHW": (2, 3), "NHWC": (1, 2)}
    if all(layouts.get(n) in hw and tuple(v) == hw[layouts[n]] for n, v in varying.items() if v):
        return "image"
    return "dims"


def _gear_shapes(inputs, kind, gears_spec, dyn_axes) -> list[dict[str, tuple[int, ...]]]:
    out = []
    for gear in gears_spec:
        values = [gear] if kind == "batch" else list(gear)
        shapes = {}
        k = 0
        for name, dims in inputs:
            s = list(dims)
            for axis in dyn_axes.get(name, []):
                if kind == "batch":
                    s[axis] = gear
                elif kind == "image":
                    s[axis] = values[dyn_axes[name].index(axis)]
                else:
                    s[axis] = values[k]
                    k += 1
            shapes[name] = tuple(s)
        out.append(shapes)
    return out
