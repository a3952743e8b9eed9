"""A TorchScript archive checked before ``torch.jit.load``: its code may only call allowed operators.

``torch.jit.load`` compiles the archive's ``code/**/*.py`` (TorchScript source) and unpickles
``data.pkl`` / ``constants.pkl`` with TorchScript's own unpickler, which runs the ``__setstate__`` methods
of the archive's classes (TorchScript code) and of C++ classes (torchbind). So loading alone runs the
archive's code, and ``torch.from_file(path, shared=True)`` in a ``__setstate__`` creates a file.

What is checked (an allow-list; refused unless ``--trust-code``):

- every ``.py`` in the archive is parsed with :mod:`ast` (not run). Every name it reads is a local of
  the file, one of TorchScript's value-level builtins (:data:`BUILTIN_NAMES`; ``print`` is not one),
  ``torch``/``math`` (an ``aten`` operator), ``ops.NS`` (an operator of an allowed namespace),
  ``CONSTANTS`` or ``__torch__`` (the archive's own classes; ``__torch__.torch.classes.NS`` only for
  the C++ classes of :data:`torch_ops.TORCHBIND_NAMESPACES`). A method call ``x.name(...)`` must not name a
  refused ``aten`` operator. Operators follow :mod:`.torch_ops`.
- because TorchScript's lexer is not Python's, the raw text (strings and comments included) is searched
  too: any ``ops.NS.OP``, ``torch.OP``, ``classes.NS`` or the name of a refused operator anywhere refuses
  the archive, so source that parses differently in the two languages cannot hide a call.
- every pickle (``data.pkl``, ``constants.pkl``, ``*.debug_pkl``) may import only torch's weights-only
  globals, ``torch.jit._pickle.*`` and ``__torch__.*`` (the archive's classes, whose code is checked above).
- no entry outside one top folder, no two entries of one name, no legacy ``model.json`` archive.
"""

from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path

from . import torch_ops
from .pickle_scan import Refused, first_refused, read_entry, torch_weights_only, unique_names

BUILTIN_NAMES = frozenset({
    # TorchScript's builtin functions that compute values
    "len", "range", "int", "float", "bool", "str", "complex", "list", "dict", "tuple", "min", "max", "abs", "all",
    "any", "sum", "divmod", "zip", "enumerate", "sorted", "ord", "chr", "hex", "oct", "bin", "round", "hash", "id",
    "pow", "isinstance", "getattr", "hasattr", "annotate", "unchecked_cast", "uninitialized", "fork", "awaitable",
    "awaitable_wait", "awaitable_nowait", "rangelist", "inf", "nan", "infj", "nanj", "__range_length",
    "__derive_index", "__is__", "__isnot__", "__not__", "torch", "ops", "math", "CONSTANTS", "__torch__",
    "__annotations__",  # class bodies: __annotations__["0"] = <type of submodule 0>
    # types in annotations
    "Tensor", "Optional", "List", "Dict", "Tuple", "NoneType", "Final", "Any", "Union", "Device", "Future", "Await",
    "RRef", "Module", "Enum", "NamedTuple", "Storage", "Stream", "Generator", "Scalar", "number", "ScalarType",
    "Layout", "MemoryFormat", "QScheme", "Capsule", "Callable", "Type", "object", "AnyEnumType",
    "Exception", "RuntimeError", "ValueError", "TypeError", "AssertionError", "IndexError", "KeyError",
    "NotImplementedError", "StopIteration", "ZeroDivisionError",
})
_RAW_REFUSED = re.compile(r"\b(from_file|_print|PythonOp|IgnoredPythonOp|rpc_async|rpc_sync|rpc_remote|"
                          r"load_tensor|_record_function_enter\w*)\b|\b(save|print)\s*\(")
_RAW_OPS = re.compile(r"\bops\s*\.\s*(\w+)\s*\.\s*(\w+)")
_RAW_TORCH = re.compile(r"\b(?:torch|math)\s*\.\s*(\w+)")
_RAW_CLASSES = re.compile(r"\bclasses\s*\.\s*(\w+)")
_NOT_TORCHSCRIPT = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Lambda, ast.Await, ast.Yield,
                    ast.YieldFrom, ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Starred)


def is_torchscript(names: list[str]) -> bool:
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def check_torchscript(path: Path) -> None:
    """Raise :class:`Refused` naming the first entry and operator the archive may not use."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        unique_names(infos)
        top = {i.filename.split("/", 1)[0] for i in infos}
        if len(top) != 1 or any("/" not in i.filename for i in infos):
            raise Refused("has entries outside one top folder (torch.jit.save writes them in one)")
        for info in infos:
            rel = info.filename.split("/", 1)[1]
            if rel == "model.json":
                raise Refused("is a legacy TorchScript archive (model.json, torch < 1.4): re-save it with torch.jit.save")
            if rel.endswith(".py"):
                _check_source(read_entry(z, info).decode("utf-8", "replace"), rel)
            elif rel.endswith(".pkl") or rel.endswith(".debug_pkl"):
                try:
                    bad = first_refused(read_entry(z, info), _pickle_global_allowed)
                except Refused as exc:
                    raise Refused(f"{rel} {exc}") from None
                if bad:
                    raise Refused(f"{rel} needs {bad}, which is neither data nor the archive's own code")


def _pickle_global_allowed(name: str) -> bool:
    if name in torch_weights_only() or name.startswith("torch.jit._pickle."):
        return True
    if name.startswith("__torch__.torch.classes."):
        return torch_ops.torchbind_refusal(name.split(".")[3] if name.count(".") >= 3 else "") is None
    return name.startswith("__torch__.")


def _check_source(text: str, rel: str) -> None:
    for why in _raw_findings(text):
        raise Refused(f"{rel}: {why}")
    try:
        tree = ast.parse(text, filename=rel)
    except (SyntaxError, ValueError) as exc:
        raise Refused(f"{rel} is not TorchScript source edgeconv can read ({type(exc).__name__})") from None
    nodes = list(ast.walk(tree))
    bound = _bound_names(nodes)
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)}
    for node in nodes:
        if id(node) in inner:
            continue  # a prefix of a longer chain: the whole chain is checked once
        why = _node_finding(node, bound)
        if why:
            raise Refused(f"{rel} line {getattr(node, 'lineno', '?')}: {why}")


def _raw_findings(text: str):
    m = _RAW_REFUSED.search(text)
    if m:
        yield f"mentions {m.group(0).rstrip('( ')!r}, an operator that reads or writes files, prints or runs Python"
    for m in _RAW_OPS.finditer(text):
        why = torch_ops.op_refusal(m.group(1), m.group(2))
        if why:
            yield f"calls {why}"
    for m in _RAW_TORCH.finditer(text):
        if m.group(1) in torch_ops.REFUSED_ATEN:
            yield f"calls aten::{m.group(1)}, which reads or writes files or the terminal"
    for m in _RAW_CLASSES.finditer(text):
        why = torch_ops.torchbind_refusal(m.group(1))
        if why:
            yield f"uses {why}"


def _bound_names(nodes: list[ast.AST]) -> set[str]:
    bound: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
    return bound


def _chain(node: ast.Attribute) -> tuple[ast.AST, list[str]]:
    parts: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    return cur, parts[::-1]


def _node_finding(node: ast.AST, bound: set[str]) -> str | None:
    if isinstance(node, _NOT_TORCHSCRIPT):
        return f"{type(node).__name__} is not TorchScript"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id not in bound and node.id not in BUILTIN_NAMES:
            return f"uses the global {node.id!r}, which is not a TorchScript value builtin"
        return None
    if not isinstance(node, ast.Attribute):
        return None
    base, parts = _chain(node)
    if isinstance(base, ast.Name) and base.id not in bound:
        if base.id in ("torch", "math"):
            return torch_ops.op_refusal("aten", parts[0])
        if base.id == "ops":
            if len(parts) < 2:
                return "uses ops without an operator"
            return torch_ops.op_refusal(parts[0], parts[1])
        if base.id == "__torch__" and parts[:2] == ["torch", "classes"]:
            return torch_ops.torchbind_refusal(parts[2] if len(parts) > 2 else "")
        if base.id in ("__torch__", "CONSTANTS"):
            return None
    return next(filter(None, map(torch_ops.refused_method, parts)), None)
