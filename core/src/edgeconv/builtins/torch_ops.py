"""Which PyTorch operators a model file may call: the allow-list shared by the TorchScript and .pt2 checks.

An operator is allowed when all of this holds (anything else is refused unless ``--trust-code``):

- its namespace is one a model needs: ``aten``, ``quantized``/``_quantized`` (TorchScript),
  ``prims``/``quantized_decomposed``/``higher_order`` (ExportedProgram graphs); ``prim`` only for the
  value-level operators in :data:`PRIM_ALLOWED` (no ``PythonOp``, ``rpc_*``, ``Print``);
- it is registered in this torch (an unknown name would be a custom library's operator);
- every ``str`` parameter of every overload has a name in :data:`SAFE_STR_PARAMS` (reduction modes,
  padding modes, einsum equations, str methods, ...). An operator that takes a path, a file name, a URL or a
  message to print has a parameter outside that list, so a new one is refused by default. Today this rule
  refuses ``aten::from_file`` (maps a file, creating it with ``shared=True``) and ``aten::save``;
- it is not one of :data:`REFUSED_ATEN`, the operators that write to the terminal with a harmless
  parameter name (``aten::_print``).

Measured on torch 2.13: of 3,754 ``aten`` schemas, only ``from_file`` and ``save`` have a ``str``
parameter outside :data:`SAFE_STR_PARAMS`.
"""

from __future__ import annotations

import functools
import re

SAFE_STR_PARAMS = frozenset({
    # modes and options of tensor operators
    "reduce", "mode", "rounding_mode", "driver", "padding", "approximate", "UPLO", "activation", "ord", "norm",
    "interpolation", "pad_mode", "padding_side", "side", "equation", "indexing", "algorithm", "attr", "type",
    "device_type", "p",
    # str, list and dict methods of TorchScript (aten::startswith, aten::join, aten::__getitem__, ...)
    "self", "a", "b", "key", "substr", "separator", "string", "el", "s", "fillchar", "chars", "l", "ind", "input",
    "inputs", "item", "dict", "idx", "t", "to_add", "values", "old", "new",
    # messages of asserts and warnings (raised as exceptions or Python warnings, never written to a file)
    "message", "assert_msg", "api_name", "msg", "cls",
})
REFUSED_ATEN = frozenset({"_print", "from_file", "save"})  # stdout, a file mapping, a file write
PRIM_ALLOWED = frozenset({
    "unchecked_cast", "unchecked_unwrap_optional", "NumToTensor", "device", "dtype", "layout", "data", "grad",
    "requires_grad", "itemsize", "nbytes", "name", "index", "type", "id", "min", "max", "abs", "rangelist",
    "TupleIndex", "TupleUnpack", "tolist", "RaiseException", "Uninitialized", "StringIndex", "EnumName",
    "EnumValue", "ModuleContainerIndex", "IfThenElse", "awaitable_nowait", "awaitable_wait", "is_cpu", "is_cuda",
    "is_ipu", "is_maia", "is_meta", "is_mkldnn", "is_mps", "is_mtia", "is_nested", "is_quantized", "is_sparse",
    "is_sparse_csr", "is_vulkan", "is_xla", "is_xpu", "isinstance",
})
TORCHSCRIPT_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized"})
GRAPH_NAMESPACES = frozenset({"aten", "prims", "quantized", "_quantized", "quantized_decomposed", "higher_order"})
HIGHER_ORDER_ALLOWED = frozenset({
    "cond", "while_loop", "map_impl", "scan", "associative_scan", "wrap_with_set_grad_enabled",
    "wrap_with_autocast", "invoke_subgraph", "auto_functionalized", "auto_functionalized_v2",
})
# torchbind classes a model may hold (packed quantized weights, XNNPACK contexts); every other C++ class
# (process groups, test classes, a custom library's) is refused: its __setstate__ is native code.
TORCHBIND_NAMESPACES = frozenset({"quantized", "xnnpack"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.cache
def _schemas() -> dict[str, tuple]:
    import torch

    out: dict[str, list] = {}
    for schema in torch._C._jit_get_all_schemas():
        out.setdefault(schema.name, []).append(schema)
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def op_refusal(namespace: str, op: str, *, graph: bool = False) -> str | None:
    """Why ``namespace::op`` is refused, or None when it is allowed (``graph``: an ExportedProgram's namespaces)."""
    name = f"{namespace}::{op}"
    if not _IDENT.match(namespace) or not _IDENT.match(op):
        return f"{name} is not an operator name"
    if namespace not in (GRAPH_NAMESPACES if graph else TORCHSCRIPT_NAMESPACES):
        return f"{name} is in a namespace edgeconv does not allow (a custom or system library)"
    if namespace == "prim":
        return None if op in PRIM_ALLOWED else f"{name} is not a value-level prim operator"
    if namespace == "higher_order":
        return None if op in HIGHER_ORDER_ALLOWED else f"{name} is not an allowed higher-order operator"
    if namespace in ("prims", "quantized_decomposed"):
        return None  # pure decompositions / quantize-dequantize; registered lazily by torch itself
    if namespace == "aten" and op in REFUSED_ATEN:
        return f"{name} reads or writes files or the terminal"
    schemas = _schemas().get(name)
    if not schemas:
        return f"{name} is not a registered operator"
    for schema in schemas:
        for arg in schema.arguments:
            if "str" in str(arg.type) and arg.name not in SAFE_STR_PARAMS:
                return f"{name} takes a string parameter {arg.name!r} (a path or a name of something outside the model)"
    return None


@functools.cache
def refused_method(attr: str) -> str | None:
    """A method call ``x.attr(...)`` on a tensor resolves to ``aten::attr``: refused like the operator."""
    if attr in REFUSED_ATEN:
        return f"aten::{attr} reads or writes files or the terminal"
    if f"aten::{attr}" in _schemas():
        return op_refusal("aten", attr)
    return None


def torchbind_refusal(namespace: str) -> str | None:
    if namespace in TORCHBIND_NAMESPACES:
        return None
    return f"the C++ class namespace torch.classes.{namespace} (its objects run native code when loaded)"
