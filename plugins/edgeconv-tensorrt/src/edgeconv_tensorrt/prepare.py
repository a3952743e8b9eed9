"""ONNX preparation for TensorRT: target version, opset and IR version, shapes, profiles.

TensorRT builds an engine for fixed shapes, or for an *optimization profile* (min/opt/max per
dynamic input). ``--input-shape name:1x3x224x224,8x3x224x224,32x3x224x224`` gives a profile;
``name:1,3,224,224`` a static shape. Without either, a dynamic batch axis is set to 1 (as trtexec
does) and any other dynamic axis is an error asking for ``--input-shape``.

The core pins every input to one shape when it imports the model (a profile's *opt*), so for a
profile the varying axes are made dynamic again here, and the prepared model is run on
onnxruntime at the profile's min and max shapes: a graph that a pass specialised to the opt shape
(a folded Reshape target, say) fails there, on this machine, instead of on the device.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from edgeconv.plugin import BadInput, IOContract, ToolchainFailed, format_shape

from .versions import DEFAULT_TARGET, TrtVersion

QDQ_MIN_OPSET = 13  # per-axis (per-channel) QuantizeLinear/DequantizeLinear: the `axis` attribute


@functools.lru_cache(maxsize=8)
def target_version(option: str | None) -> TrtVersion:
    """``-O target_trt``: a version, or ``auto`` = the installed TensorRT, else JetPack 6's 10.3."""
    if option and str(option).lower() != "auto":
        return TrtVersion.parse(option, what="-O target_trt")
    from .doctor import installed_version

    return installed_version() or TrtVersion.parse(DEFAULT_TARGET)


@dataclass
class Profile:
    """One input's shapes: static when min == opt == max."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.min, self.max)) if a != b]

    def to_dict(self) -> dict[str, Any]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for s, lo, hi in zip(shape, self.min, self.max))


@dataclass
class Prepared:
    proto: Any  # onnx.ModelProto
    io: IOContract
    profiles: dict[str, Profile]
    opset: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return any(p.dynamic for p in self.profiles.values())


def resolve_profiles(io: IOContract, given: dict[str, list[tuple[int, ...]]] | None,
                     warn=lambda msg: None) -> dict[str, Profile]:
    """Every input's profile from ``--input-shape`` (the core's ``job.input_profiles``)."""
    given = dict(given or {})
    unknown = set(given) - {t.name for t in io.inputs}
    if unknown:
        raise BadInput(f"--input-shape names {sorted(unknown)[0]!r}, but the model's inputs are: "
                       f"{', '.join(t.name for t in io.inputs)}", stage="export")
    out: dict[str, Profile] = {}
    for spec in io.inputs:
        shapes = [tuple(int(d) for d in s) for s in given.get(spec.name, [])]
        if len(shapes) == 3:
            lo, opt, hi = shapes
            for what, shape in (("min", lo), ("opt", opt), ("max", hi)):
                if len(shape) != len(spec.shape):
                    raise BadInput(f"--input-shape {spec.name}: the {what} shape {format_shape(shape)} has rank "
                                   f"{len(shape)}, the input has rank {len(spec.shape)}", stage="export")
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                raise BadInput(f"--input-shape {spec.name}: the profile must satisfy min <= opt <= max on every "
                               f"axis (got {_x(lo)}, {_x(opt)}, {_x(hi)})", stage="export")
            # The core pins the opt shape into the model, so an axis the model fixes cannot be told
            # from a dynamic one here: a profile that varies a fixed axis fails the CPU check at min/max.
            out[spec.name] = Profile(spec.name, lo, opt, hi)
            continue
        shape = shapes[0] if shapes else None
        if shape is None:
            dims = []
            for axis, d in enumerate(spec.shape):
                if isinstance(d, int):
                    dims.append(d)
                elif axis == 0:
                    dims.append(1)
                    warn(f"input {spec.name!r} has a dynamic batch axis {d!r}: the engine is built for batch 1; give "
                         f"--input-shape {spec.name}:1x...,8x...,32x... (min,opt,max) for a range")
                else:
                    raise BadInput(
                        f"input {spec.name!r} {format_shape(spec.shape)} has a dynamic axis {axis} ({d!r}): TensorRT "
                        f"needs its size; give --input-shape {spec.name}:"
                        f"{','.join(str(x) if isinstance(x, int) else '?' for x in spec.shape)} or a profile "
                        f"{spec.name}:MINxx...,OPTxx...,MAXxx...", stage="export")
            shape = tuple(dims)
        out[spec.name] = Profile(spec.name, shape, shape, shape)
    return out


def _x(shape) -> str:
    return "x".join(str(d) for d in shape)


def prepare(model, job, version: TrtVersion, *, opset: int | None = None) -> Prepared:
    """The ONNX TensorRT gets: opset in the parser's range, shapes set or made dynamic, IR capped."""
    import onnx

    notes: list[str] = []
    profiles = resolve_profiles(model.io, job.input_profiles, job.warn)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.obj)
    lo, hi = version.opset_range
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), hi)
    wanted = opset or min(max(current, QDQ_MIN_OPSET if job.precision == "int8" else lo), hi)
    if opset and not lo <= opset <= hi:
        raise BadInput(f"-O opset={opset}: TensorRT {version.short} parses opsets {lo}..{hi}", stage="export")
    if wanted != current:
        proto = _convert_opset(proto, wanted, current)
        notes.append(f"opset {current} -> {wanted}")
    proto = _set_shapes(proto, profiles)
    min_ir = onnx.helper.find_min_ir_version_for([o for o in proto.opset_import], ignore_unknown=True)
    ir = max(min_ir, min(proto.ir_version, version.max_ir_version))
    if ir != proto.ir_version:
        notes.append(f"IR version {proto.ir_version} -> {ir}")
        proto.ir_version = ir
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ToolchainFailed(f"the model prepared for TensorRT fails the ONNX checker: {_brief(exc)}",
                              stage="export") from None
    io = _contract(proto, model.io, profiles)
    info = {"opset": wanted, "ir_version": proto.ir_version, "target_tensorrt": version.short,
            "profiles": {k: p.to_dict() for k, p in profiles.items()}, "changes": notes}
    return Prepared(proto, io, profiles, wanted, info)


def fit_to_parser(proto, version: TrtVersion) -> bool:
    """A pass's output for TensorRT's parser (a quantizer may have raised the IR version): the IR version capped in
    place (True when changed); an opset outside the parser's range is refused."""
    import onnx

    lo, hi = version.opset_range
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), hi)
    if not lo <= opset <= hi:
        raise ToolchainFailed(f"the model has opset {opset}; TensorRT {version.short}'s parser takes {lo}..{hi}",
                              stage="optimize")
    min_ir = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    ir = max(min_ir, min(proto.ir_version, version.max_ir_version))
    if ir == proto.ir_version:
        return False
    proto.ir_version = ir
    return True


def _convert_opset(proto, wanted: int, current: int):
    from onnx import version_converter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return version_converter.convert_version(proto, wanted)
    except Exception as exc:
        raise BadInput(f"cannot convert the model from opset {current} to {wanted} for TensorRT "
                       f"({_brief(exc)}); export it at opset {wanted} or give -O opset=N",
                       stage="export") from None


def _set_shapes(proto, profiles: dict[str, Profile]):
    """Inputs: static dims set, profile-varying dims named; outputs and value_info re-inferred."""
    import onnx

    for vi in proto.graph.input:
        p = profiles.get(vi.name)
        if p is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if axis in p.dynamic_axes:
                d.ClearField("dim_value")
                d.dim_param = "batch" if axis == 0 else f"{vi.name}_dim{axis}"
            else:
                d.ClearField("dim_param")
                d.dim_value = int(p.opt[axis])
    for vo in proto.graph.output:
        vo.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        return proto


def _contract(proto, source: IOContract, profiles: dict[str, Profile]) -> IOContract:
    from edgeconv.plugin import io_contract

    io = io_contract(proto)
    layouts = {t.name: t.layout for t in source.inputs}
    inputs = tuple(replace(t, layout=layouts.get(t.name, t.layout)) for t in io.inputs)
    out_dtypes = {t.name: t.dtype for t in source.outputs}
    outputs = tuple(replace(t, dtype=out_dtypes.get(t.name, t.dtype)) for t in io.outputs)
    return replace(io, inputs=inputs, outputs=outputs, preprocessing=dict(source.preprocessing))


def check_profiles_on_cpu(path, profiles: dict[str, Profile], io: IOContract, seed: int = 0) -> dict[str, Any]:
    """Run the prepared model on onnxruntime at the profile's min and max shapes.

    For a profile that varies only the batch axis, the first rows at max must equal the rows at
    min (same inputs): a graph specialised to one batch size fails either way.
    """
    import numpy as np
    import onnxruntime as ort

    dynamic = {k: p for k, p in profiles.items() if p.dynamic}
    if not dynamic:
        return {"checked": False}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    dtypes = {t.name: np.dtype(t.dtype) for t in io.inputs}

    def feed(which: str) -> dict[str, Any]:
        arrays = {}
        for name, p in profiles.items():
            shape = getattr(p, which)
            dt = dtypes.get(name, np.dtype("float32"))
            arrays[name] = (rng.standard_normal(shape).astype(dt) if dt.kind == "f"
                            else rng.integers(0, 2, shape).astype(dt))
        return arrays

    results: dict[str, Any] = {"checked": True, "shapes": {}}
    try:
        small = feed("min")
        out_small = sess.run(None, small)
        big = feed("max")
        batch_only = all(p.dynamic_axes == [0] for p in dynamic.values())
        if batch_only:
            for name, p in profiles.items():
                if p.dynamic:
                    big[name][: p.min[0]] = small[name]
        out_big = sess.run(None, big)
    except Exception as exc:
        raise BadInput(
            f"the model prepared for the profile does not run at its min/max shapes on onnxruntime "
            f"({_brief(exc)}): a pass probably specialised the graph to the opt shape; try --skip-pass "
            "onnx.simplify, or export the model with dynamic axes", stage="export") from None
    names = [o.name for o in sess.get_outputs()]
    for name, a, b in zip(names, out_small, out_big):
        results["shapes"][name] = {"min": list(a.shape), "max": list(b.shape)}
    if batch_only:
        n = min(p.min[0] for p in dynamic.values())
        for name, a, b in zip(names, out_small, out_big):
            if a.ndim and b.ndim and a.shape[0] == n and not np.allclose(a, b[:n], rtol=1e-3, atol=1e-4):
                raise BadInput(f"output {name!r} of the prepared model changes with the batch size (rows at max "
                               "batch differ from the same rows at min batch): the graph mixes samples or was "
                               "specialised to one batch size", stage="export")
        results["batch_consistent"] = True
    return results


def _brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
