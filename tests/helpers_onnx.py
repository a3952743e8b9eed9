"""Tiny ONNX models built in code (onnx.helper), for tests that need a real model file.

Import from a test file with::

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_onnx import image_classifier, save_model, ...

Every builder returns an ``onnx.ModelProto`` that passes ``onnx.checker.check_model``
(but for the ones meant to be broken, which say so); ``save_*`` helpers write it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # old enough for every onnxruntime this project supports
INPUT = "input"
OUTPUT = "logits"
H = W = 16
CLASSES = 10


def _model(graph: onnx.GraphProto, opsets: dict[str, int] | None = None) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", OPSET)]
    imports += [helper.make_opsetid(d, v) for d, v in (opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="edgeconv-tests")
    model.ir_version = IR_VERSION
    return model


def image_classifier(
    batch: int | str = 1,
    *,
    channels: int = 4,
    classes: int = CLASSES,
    seed: int = 0,
    nan_weights: bool = False,
    input_shape: list[int | str] | None = None,
) -> onnx.ModelProto:
    """Conv(3->channels, 3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(-> classes).

    Input ``"input"`` [batch,3,16,16] float32 (or ``input_shape`` as given, which may
    be invalid on purpose: zero or negative dims), output ``"logits"`` [batch,classes].
    ``nan_weights`` puts NaN into the Gemm's B: every output is then NaN.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(channels).astype(np.float32) * 0.1
    fc_w = rng.standard_normal((classes, channels)).astype(np.float32)
    fc_b = rng.standard_normal(classes).astype(np.float32) * 0.1
    if nan_weights:
        fc_w[0, 0] = np.nan
    inits = [
        numpy_helper.from_array(w, "conv.weight"),
        numpy_helper.from_array(b, "conv.bias"),
        numpy_helper.from_array(fc_w, "fc.weight"),
        numpy_helper.from_array(fc_b, "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT, "conv.weight", "conv.bias"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [OUTPUT], name="fc", transB=1),
    ]
    shape = input_shape if input_shape is not None else [batch, 3, H, W]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [shape[0], classes])],
        initializer=inits,
    )
    return _model(graph)


def unknown_domain_model(op_type: str = "FancyOp", domain: str = "com.example", node_name: str = "fancy") -> onnx.ModelProto:
    """Relu, then an op from a custom domain no runtime knows: loads, but cannot run."""
    nodes = [
        helper.make_node("Relu", [INPUT], ["relu"], name="relu"),
        helper.make_node(op_type, ["relu"], ["out"], name=node_name, domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "custom_op",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, H, W])],
    )
    return _model(graph, {domain: 1})


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` as one self-contained protobuf file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def save_external(model: onnx.ModelProto, path: str | Path, location: str | None = None) -> tuple[Path, Path]:
    """Write ``model`` with every initializer in one external data file beside it.

    Returns ``(model file, data file)``. ``model`` itself is not modified.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    location = location or f"{path.name}.data"
    onnx.save(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0)
    return path, path.parent / location


def save_with_external_location(model: onnx.ModelProto, path: str | Path, location: str, tensor: str = "fc.weight") -> Path:
    """Write ``model`` with ``tensor`` marked as external data at ``location``, verbatim.

    The location is written by hand (``../outside.bin``, ``/etc/passwd``, a missing file):
    nothing is written there and no path is checked; the other tensors stay inline.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for init in copy.graph.initializer:
        if init.name == tensor:
            size = len(init.raw_data) or numpy_helper.to_array(init).nbytes
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
                entry = init.external_data.add()
                entry.key, entry.value = key, value
            break
    else:
        raise KeyError(tensor)
    path.write_bytes(copy.SerializeToString())
    return path


def sample_input(batch: int = 1, seed: int = 0) -> np.ndarray:
    """A float32 [batch,3,16,16] input for ``image_classifier``."""
    return np.random.default_rng(seed).standard_normal((batch, 3, H, W)).astype(np.float32)


def sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    else:
        h.update(b"<missing>")
    return h.hexdigest()
