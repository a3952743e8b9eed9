"""ONNX helpers shared by the core and every plugin (through ``edgeconv.plugin``): read an ``.onnx`` file with its
external data confined to its folder, check it, infer shapes, read its IO contract, pin shapes, walk the graph
(subgraphs included), save, and run onnxruntime's tools without side effects."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .data import guess_layout
from .errors import BadInput
from .model import IOContract, Model, TensorSpec

# Largest model kept in one protobuf file (the format's limit is 2 GiB).
INLINE_LIMIT = 1_800_000_000


def read(path: Path, *, with_externals: bool = False):
    """Read and check an ONNX file, its external data confined to its folder. ``with_externals``: also return the
    external data files it loaded (for the source's size and hash)."""
    proto, externals = read_with_externals(Path(path))
    return (proto, externals) if with_externals else proto


def read_with_externals(path: Path):
    """``read``, and the external data files it loaded (for the source's size and hash)."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise BadInput("no such file", file=path, stage="import")
    if path.is_dir():
        raise BadInput("is a directory; expected an .onnx file", file=path, stage="import")
    if path.stat().st_size == 0:
        raise BadInput("is empty (0 bytes)", file=path, stage="import")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise BadInput(f"is not a valid ONNX file (protobuf parse failed: {brief(exc)})", file=path, stage="import") from None
    except OSError as exc:  # e.g. no read permission
        raise BadInput(f"cannot be read ({exc.strerror or brief(exc)})", file=path, stage="import") from None
    if proto.ir_version <= 0 or not proto.opset_import or not proto.HasField("graph"):
        raise BadInput("is not a valid ONNX model (no IR version, opset or graph: truncated or not ONNX)", file=path, stage="import")
    if proto.ir_version > onnx.IR_VERSION:
        raise BadInput(
            f"was written with ONNX IR version {proto.ir_version}; the installed onnx {onnx.__version__} reads up to {onnx.IR_VERSION}",
            file=path,
            stage="import",
        )
    externals = check_external_data(proto, path)
    if externals:
        load_external_data(proto, path)
    return proto, externals


def load_external_data(proto, path: Path) -> None:
    """Read every tensor's external data into the model (after ``check_external_data`` confined each location to
    the model's folder). onnx's own loader refuses a data file with several hard links; hard links are what
    DVC-style caches use, and a file inside the model's folder is the model's data however it is linked. Offsets
    and lengths are checked against the file's size before anything is read."""
    from onnx.external_data_helper import _get_all_tensors

    base = path.parent.resolve()
    for tensor in _get_all_tensors(proto):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in tensor.external_data}
        target = (base / info["location"]).resolve()
        try:
            offset = int(info.get("offset") or 0)
            size = target.stat().st_size
            length = int(info["length"]) if info.get("length") not in (None, "") else size - offset
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError(f"offset {offset} and length {length} do not fit the file's {size} bytes")
            with open(target, "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read the external data of tensor {tensor.name!r} ({brief(exc)})", file=path,
                           stage="import") from None
        tensor.raw_data = data
        tensor.data_location = 0  # TensorProto.DEFAULT
        del tensor.external_data[:]


def check_external_data(proto, path: Path) -> list[Path]:
    """Every external-data location must be a relative path inside the model's folder."""
    from onnx.external_data_helper import _get_all_tensors

    base = path.parent.resolve()
    found = []
    for tensor in _get_all_tensors(proto):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise BadInput(f"tensor {tensor.name!r} has external data with no location", file=path, stage="import")
        if os.path.isabs(location) or location.startswith(("/", "\\")):
            raise BadInput(
                f"tensor {tensor.name!r} points to external data at an absolute path {location!r}; "
                "external data must stay inside the model's folder",
                file=path,
                stage="import",
            )
        try:  # a crafted location may hold a NUL byte or be too long for the OS
            target = (base / location).resolve()
            is_file = target.is_file()
        except (OSError, ValueError) as exc:
            raise BadInput(
                f"tensor {tensor.name!r} has an invalid external data location {location[:80]!r} ({brief(exc)[:80]})",
                file=path,
                stage="import",
            ) from None
        if base != target and base not in target.parents:
            raise BadInput(
                f"tensor {tensor.name!r} points to external data outside the model's folder ({location!r})",
                file=path,
                stage="import",
            )
        if not is_file:
            raise BadInput(f"external data file {location!r} of tensor {tensor.name!r} is missing", file=path, stage="import")
        found.append(target)
    return sorted(set(found))


def check_io_types(proto, where: Any) -> None:
    """Every graph input (but initializers) that is a tensor must have a defined element type: an UNDEFINED (0)
    type passes the ONNX checker, and onnxruntime's symbolic shape inference then never terminates on it (found by
    tests/test_fuzz.py: one byte of the input's type set to 0)."""
    inits = {t.name for t in proto.graph.initializer}
    for v in proto.graph.input:
        if v.name not in inits and v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type == 0:
            raise BadInput(f"graph input {v.name!r} has no element type (UNDEFINED)", file=where, stage="import")


def from_proto(proto, path: Path | None, *, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Model:
    import onnx

    where = path or "<ModelProto>"
    proto, fixes = normalize_io(proto)
    check_io_types(proto, where)
    try:
        if proto.ByteSize() < INLINE_LIMIT:
            onnx.checker.check_model(proto)
        elif path is not None:
            onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise BadInput(f"fails the ONNX checker: {brief(exc)}", file=where, stage="import") from None
    except Exception as exc:  # the checker raises plain errors for some corrupt files
        raise BadInput(f"fails the ONNX checker: {brief(exc)}", file=where, stage="import") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        inferred = proto  # shape inference is a help, not a requirement
    if inferred is proto and proto.ByteSize() < INLINE_LIMIT:  # the fix below edits in place: not the caller's
        inferred = onnx.ModelProto()
        inferred.CopyFrom(proto)
    out_fixes = fix_declared_outputs(inferred)
    fixes += out_fixes
    io = io_contract(inferred)
    unconfirmed = {f["tensor"]: tuple(f["declared"]) for f in out_fixes if f.get("unconfirmed")}
    if unconfirmed:
        from dataclasses import replace

        io = replace(io, outputs=tuple(replace(t, shape=unconfirmed.get(t.name, t.shape)) for t in io.outputs))
    if input_shapes:
        io = io.pinned(input_shapes, file=str(where))
        inferred = pin_shapes(inferred, input_shapes)
    check_dims(io, where)
    meta = {
        "opset": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "nodes": len(proto.graph.node),
    }
    if fixes:
        meta["io_fixes"] = fixes
    return Model(form="onnx", io=io, path=path, obj=inferred, meta=meta)


# dim_param values that mean "unknown" rather than naming an axis: two axes sharing one of these
# are not equal (paddle2onnx writes "?" for H and W alike).
_UNKNOWN_DIM_NAMES = {"?", "-1", "None", "none", "unk", "unknown", "dynamic", ""}


def _axis_name(role: str, index: int, axis: int) -> str:
    return f"{role}{index}_dim{axis}"


def normalize_io(proto):
    """Graph inputs/outputs with "unknown" dims given unique names.

    ``dim_value: -1`` (an exporter convention for "dynamic", invalid in ONNX) and placeholder
    ``dim_param`` names (``?``) become a dynamic axis of its own: ``in0_dim2``. Shared placeholders
    would otherwise tell shape inference (and onnxruntime's symbolic inference in quantization)
    that those axes are equal. Returns the (copied when changed) proto and the fixes made.
    """
    import onnx

    changes = []
    for role, values in (("in", _graph_inputs(proto)), ("out", list(proto.graph.output))):
        for i, vi in enumerate(values):
            t = vi.type.tensor_type
            if not t.HasField("shape"):
                continue
            for axis, d in enumerate(t.shape.dim):
                if (d.HasField("dim_value") and d.dim_value == -1) or (
                    d.HasField("dim_param") and d.dim_param.strip() in _UNKNOWN_DIM_NAMES
                ):
                    was = d.dim_value if d.HasField("dim_value") else d.dim_param
                    changes.append((role, vi.name, axis, was, _axis_name(role, i, axis)))
    if not changes:
        return proto, []
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    by_name = {("in", vi.name): vi for vi in _graph_inputs(fixed)}
    by_name.update({("out", vi.name): vi for vi in fixed.graph.output})
    for role, name, axis, _was, new in changes:
        d = by_name[(role, name)].type.tensor_type.shape.dim[axis]
        d.ClearField("dim_value")
        d.dim_param = new
    return fixed, [
        {"tensor": name, "axis": axis, "declared": was, "now": new, "why": "unknown dimension named"}
        for _role, name, axis, was, new in changes
    ]


def _graph_inputs(proto) -> list:
    inits = {i.name for i in proto.graph.initializer}
    return [vi for vi in proto.graph.input if vi.name not in inits]


def _dims(vi) -> list[int | str] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _conflict(declared: list, actual: list) -> bool:
    return len(declared) != len(actual) or any(
        isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(declared, actual, strict=True)
    )


def fix_declared_outputs(proto) -> list[dict[str, Any]]:
    """Replace declared output shapes that contradict the graph (in place) and say so.

    Some exporters declare an output shape the graph does not produce (ddddocr ``common.onnx``
    declares [1,seqlen]; the graph gives [T,1,8210]). Tools that trust the declaration then
    rewrite the graph wrongly (onnxslim turns the final Reshape into [1,-1]). The outputs are
    inferred again without their declarations: with ONNX shape inference, and where that cannot
    find the rank (a Reshape to a computed shape), with onnxruntime's symbolic shape inference.
    """
    import onnx

    declared = {o.name: _dims(o) for o in proto.graph.output}
    if not any(declared.values()) or proto.ByteSize() >= INLINE_LIMIT:  # inference needs one protobuf
        return []
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    for o in bare.graph.output:
        o.type.tensor_type.ClearField("shape")
    del bare.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=False)
        actual = {o.name: _dims(o) for o in inferred.graph.output}
    except Exception:
        actual = {}
    unknown = [n for n, d in declared.items() if d is not None and actual.get(n) is None]
    if unknown:
        actual.update({n: d for n, d in _symbolic_outputs(bare).items() if actual.get(n) is None})
    fixes = []
    for i, o in enumerate(proto.graph.output):
        want, got = declared[o.name], actual.get(o.name)
        if want is not None and got is None:
            # Unconfirmed (e.g. a vendor op no inference knows): the tools get no fixed size to trust (the
            # checker wants a rank, so every axis becomes dynamic); the contract keeps the declared shape.
            relaxed = []
            for axis, dim in enumerate(o.type.tensor_type.shape.dim):
                if dim.HasField("dim_value"):
                    dim.ClearField("dim_value")
                    dim.dim_param = _axis_name("out", i, axis)
                relaxed.append(dim.dim_param)
            if relaxed != want:
                fixes.append({"tensor": o.name, "declared": want, "now": relaxed, "unconfirmed": True,
                              "why": "shape inference cannot confirm the declared output shape: its sizes are "
                                     "not passed on to the tools"})
            continue
        if want is None or got is None or not _conflict(want, got):
            continue
        shape = o.type.tensor_type.shape
        del shape.dim[:]
        now = []
        for axis, d in enumerate(got):
            dim = shape.dim.add()
            if isinstance(d, int) and d > 0:
                dim.dim_value = d
            else:  # a symbolic expression or an unnamed axis: a dynamic axis of its own
                d = d if isinstance(d, str) and d.replace("_", "").replace(".", "").isalnum() else _axis_name("out", i, axis)
                dim.dim_param = d
            now.append(d)
        fixes.append({"tensor": o.name, "declared": want, "now": now,
                      "why": "the declared output shape contradicts the graph"})
    return fixes


def _symbolic_outputs(proto) -> dict[str, list]:
    """Output shapes from onnxruntime's symbolic shape inference (best effort: {} on failure)."""
    try:
        import_ort_tools()
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        # When it cannot infer everything it saves "sym_shape_infer_temp.onnx" and the weights (uuid.data)
        # into the working directory: let it do so in a folder of its own.
        with ort_tool_cwd():
            out = SymbolicShapeInference.infer_shapes(proto, auto_merge=True, guess_output_rank=False)
    except Exception:
        return {}
    return {o.name: d for o in out.graph.output if (d := _dims(o)) is not None}


def check_dims(io: IOContract, where: Any) -> None:
    for t in io.inputs:
        bad = [d for d in t.shape if isinstance(d, int) and d < 0]
        zero = [d for d in t.shape if isinstance(d, int) and d == 0]
        if bad or zero:
            raise BadInput(
                f"input {t.name!r} declares an invalid shape [{','.join(map(str, t.shape))}] "
                f"({'negative' if bad else 'zero-size'} dimension)",
                file=where,
                stage="import",
            )


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        try:
            return onnx.TensorProto.DataType.Name(elem_type).lower()
        except ValueError:  # a type number this onnx does not know (found by fuzzing)
            return f"unknown-type-{elem_type}"


def _spec(value_info, index: int, role: str) -> TensorSpec:
    t = value_info.type.tensor_type
    shape: list[int | str] = []
    if t.HasField("shape"):
        for axis, d in enumerate(t.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.dim_param:
                shape.append(d.dim_param)
            else:
                shape.append(f"{role}{index}_dim{axis}")
    spec = TensorSpec(value_info.name, tuple(shape), _dtype_name(t.elem_type))
    layout = guess_layout(spec.shape) if role == "in" else None
    return TensorSpec(spec.name, spec.shape, spec.dtype, layout=layout)


def io_contract(proto) -> IOContract:
    inits = {i.name for i in proto.graph.initializer}
    inputs = [vi for vi in proto.graph.input if vi.name not in inits]
    meta = {p.key: p.value for p in proto.metadata_props}
    pre = {"note": meta["preprocessing"]} if "preprocessing" in meta else {}
    return IOContract(
        inputs=tuple(_spec(vi, i, "in") for i, vi in enumerate(inputs)),
        outputs=tuple(_spec(vi, i, "out") for i, vi in enumerate(proto.graph.output)),
        preprocessing=pre,
    )


def pin_shapes(proto, shapes: dict[str, tuple[int, ...]]):
    """A copy of ``proto`` with the named inputs' dims fixed, shapes inferred again."""
    import onnx

    pinned = onnx.ModelProto()
    pinned.CopyFrom(proto)
    for vi in pinned.graph.input:
        if vi.name in shapes:
            for d, size in zip(vi.type.tensor_type.shape.dim, shapes[vi.name]):
                d.ClearField("dim_param")
                d.dim_value = int(size)
    del pinned.graph.value_info[:]  # inferred again from the pinned inputs
    try:
        return onnx.shape_inference.infer_shapes(pinned, strict_mode=False)
    except Exception:
        return pinned


def save(proto, path: Path) -> list[Path]:
    """Write ``proto`` to ``path`` (external data beside it when over 1.8 GB)."""
    import onnx

    if proto.ByteSize() < INLINE_LIMIT:
        onnx.save(proto, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    return [path, data]


def iter_nodes(graph):
    """Every node of an ONNX graph, those in subgraphs (If/Loop/Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == 5:  # AttributeProto.GRAPH
                yield from iter_nodes(attr.g)
            for g in attr.graphs:
                yield from iter_nodes(g)


def float_inputs(proto, keep: list[str]) -> int:
    """Feed each kept node the float tensor its QuantizeLinear -> DequantizeLinear pair came from,
    and drop the pairs nothing reads any more. Returns how many inputs were restored.

    ``nodes_to_exclude`` alone leaves the node's *input* quantized when a neighbour is (the tensor
    is quantized once for every consumer): the node would compute in float on int8-rounded values.
    """
    g = proto.graph
    producers = {o: n for n in g.node for o in n.output}
    wanted = set(keep)
    restored = 0
    for node in g.node:
        if node.name not in wanted:
            continue
        for i, x in enumerate(node.input):
            dq = producers.get(x)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            node.input[i] = q.input[0]
            restored += 1
    outputs = {o.name for o in g.output}
    while True:
        used = {x for n in g.node for x in n.input} | outputs
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {x for n in g.node for x in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return restored


def graphs(graph):
    """``graph`` and every subgraph in it (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == 5:  # AttributeProto.GRAPH
                yield from graphs(attr.g)
            for g in attr.graphs:
                yield from graphs(g)


def brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def import_ort_tools() -> None:
    """Import ``onnxruntime.tools`` without torch.

    Its ``__init__`` imports torch whenever torch is installed, only to offer a PyTorch export
    helper that quantization never uses: 3-9 s on every INT8 conversion here. Hide torch
    from ``find_spec`` for that one import (no effect when torch is already loaded).
    """
    import importlib.util
    import sys

    if "onnxruntime.tools" in sys.modules or "torch" in sys.modules:
        return
    real = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: None if name == "torch" else real(name, package)
    try:
        import onnxruntime.tools  # noqa: F401
    finally:
        importlib.util.find_spec = real


@contextlib.contextmanager
def ort_tool_cwd() -> Iterator[None]:
    """Run an onnxruntime tool in a throw-away working folder.

    onnxruntime's symbolic shape inference, when it cannot infer every shape, saves
    ``sym_shape_infer_temp.onnx`` and a uuid-named ``.data`` file into the *current* folder before it
    raises (onnxruntime/tools/symbolic_shape_infer.py): without this, converting a model with dynamic
    axes left 13 MB files in the user's folder. The process is single-threaded here, so chdir is safe.
    """
    old = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="edgeconv-ort-")
    try:
        os.chdir(tmp)
        yield
    finally:
        os.chdir(old)
        shutil.rmtree(tmp, ignore_errors=True)


def with_outputs(proto: Any, names: Any) -> Any:
    """A copy of ``proto`` that also outputs the tensors ``names`` (their types left to the runtime): how a
    calibration pass, a layer trace or a range probe reads intermediate tensors on onnxruntime."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    return m
