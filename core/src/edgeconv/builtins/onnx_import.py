"""The ONNX importer: an ``.onnx`` file (external data confined to its folder) or a ``ModelProto``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.plugin import Model, from_proto, read_onnx


def load(source: Any, *, input_shapes: dict[str, tuple[int, ...]] | None = None, options: dict | None = None) -> Model:
    import onnx

    if isinstance(source, onnx.ModelProto):
        proto, path, externals = source, None, []
    else:
        path = Path(source)
        proto, externals = read_onnx(path, with_externals=True)
    model = from_proto(proto, path, input_shapes=input_shapes)
    model.meta["external_data"] = [str(p) for p in externals]
    return model
