"""A ``.pt2`` (``torch.export.save``) archive checked before ``torch.export.load``, entry by entry.

What ``torch.export.load`` (torch 2.13) does with an archive, and what can run code on the way:

- pickled payloads: ``data/sample_inputs/<model>.pt`` (``torch.load(weights_only=True)``, and on failure
  ``weights_only=False``), weights and constants the payload configs mark ``use_pickle``
  (``torch.load(weights_only=False)`` directly), ``opaque_obj_*`` constants (``pickle.loads``),
  ``custom_obj_*`` constants (``torch._C._pickle_load_obj``: a C++ torchbind object, native ``__setstate__``);
  the pre-2.7 layout's ``serialized_*.pt`` (the same torch.load with fallback). A ``torch.save`` zip that holds
  ``constants.pkl`` is handed to ``torch.jit.load`` (TorchScript code);
- ``data/aotinductor/``: a compiled shared library, loaded (native code);
- the graph (``models/<model>.json``): every node's target is resolved by walking attributes of
  ``torch``/``operator``/``math`` (``torch.serialization.os.system`` resolves), symbolic shapes are parsed
  with ``sympy.sympify`` (``eval``), and ``guards_code`` becomes Python source that ``ep.module()`` runs
  with ``exec``, with the string inputs' values pasted in.

So, before torch sees the file (each refusal names the entry and what it needs):

- every pickled payload must be a ``torch.save`` zip whose pickles import only torch's weights-only globals
  (:func:`.pickle_scan.check_torch_save`), else ``--trust-pickle``; ``custom_obj_*`` needs ``--trust-pickle``;
- compiled code (``data/aotinductor/``, ``.so``/``.dll``/``.dylib``) needs ``--trust-code``;
- every graph node target, and every operator passed as an argument, must be an allowed operator
  (:mod:`.torch_ops`: ``torch.ops.aten.*`` etc., the ``operator``/``math`` functions of symbolic shapes,
  ``torch.sym_*``); every symbolic expression must be arithmetic on symbols and numbers with the functions
  torch's deserializer defines (checked with :mod:`ast`); every guard must be a comparison of input sizes;
  string inputs may not contain quotes or backslashes; else ``--trust-code``;
- the archive has one top folder (or the pre-2.7 flat layout), no two entries of one name, and payload
  paths that are plain names.
"""

from __future__ import annotations

import ast
import json
import math
import posixpath
import re
import zipfile
from pathlib import Path
from typing import Any

from . import torch_ops
from .pickle_scan import (
    ZIP_MAGIC,
    Refused,
    check_torch_save,
    first_refused,
    read_entry,
    unique_names,
    weights_only_allowed,
)

HARMLESS = frozenset({"archive_format", "archive_version", "byteorder", "version", ".data/version",
                      ".data/serialization_id", ".format_version", ".storage_alignment"})
OPERATOR_FUNCTIONS = frozenset({"getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos",
                                "abs", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert",
                                "lshift", "rshift", "matmul"})
MATH_FUNCTIONS = frozenset(n for n in dir(math) if not n.startswith("_") and callable(getattr(math, n)))
SYM_FUNCTIONS = frozenset({"sym_not", "sym_int", "sym_float", "sym_ite", "sym_max", "sym_min", "sym_sqrt", "sym_sum",
                           "_sym_sqrt"})
# The functions a symbolic expression may call: torch.utils._sympy.functions (the deserializer's
# sympy_functions) and sympy's own arithmetic and logic. Anything else (sympy's preview, lambdify, ...) is refused.
SYMPY_CALLS = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "BitwiseFn_bitwise_and",
    "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor", "OpaqueUnaryFn_sqrt", "Max", "Min", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or",
    "Not", "Integer", "Rational", "Float", "sqrt",
})
GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_SYM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PLAIN = re.compile(r"^[\w.-]+$")
_SAFE_STRING = re.compile(r"^[^'\"\\\r\n]*$")
_NUMBER_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr,
               ast.BitXor, ast.USub, ast.UAdd, ast.Not, ast.Invert, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
               ast.GtE, ast.And, ast.Or)
_EXPR_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant, ast.Name, ast.Load,
               ast.Call, ast.Tuple, *_NUMBER_OPS)  # a Name in ast.Store/Del cannot occur in mode="eval" w/o walrus


def check_pt2(path: Path, *, trust_pickle: bool, trust_code: bool) -> None:
    """Raise :class:`Refused` (with the flag that would allow it) unless the archive is data and allowed operators."""
    try:
        with zipfile.ZipFile(path) as z:
            entries = _entries(z)
            configs = [rel for rel, _ in entries if rel.startswith(("data/weights/", "data/constants/"))
                       and rel.endswith(".json")]
            raw = _raw_payloads(z, dict(entries), configs)
            for rel, info in entries:
                _check_entry(z, rel, info, raw, trust_pickle=trust_pickle, trust_code=trust_code)
    except zipfile.BadZipFile as exc:
        raise Refused(f"is not a zip archive, so not a torch.export.save file ({exc})") from None


def _entries(z: zipfile.ZipFile) -> list[tuple[str, zipfile.ZipInfo]]:
    infos = z.infolist()
    if not infos:
        raise Refused("is an empty archive")
    unique_names(infos)
    names = [i.filename for i in infos]
    if "serialized_exported_program.json" in names:  # the pre-2.7 layout, at the archive's root
        return [(i.filename, i) for i in infos]
    top = {n.split("/", 1)[0] for n in names}
    if len(top) != 1 or any("/" not in n for n in names):
        raise Refused("has entries outside one top folder (torch.export.save writes them in one)")
    entries = [(i.filename.split("/", 1)[1], i) for i in infos]
    rels = {rel for rel, _ in entries}
    if "archive_format" not in rels:
        if any(r.startswith("code/") for r in rels) and "constants.pkl" in rels:
            raise Refused("is a TorchScript archive (torch.jit.save), not an ExportedProgram: name it .pt")
        raise Refused("is not an ExportedProgram archive (no archive_format entry; torch.export.save writes one)")
    return entries


def _raw_payloads(z: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], configs: list[str]) -> set[str]:
    """The weight/constant entries torch reads as raw tensor bytes (never unpickled), from the payload configs."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for rel in configs:
        try:
            config = json.loads(read_entry(z, infos[rel])).get("config", {})
        except (ValueError, AttributeError):
            raise Refused(f"{rel} is not a readable payload config") from None
        folder = posixpath.dirname(rel)
        for meta in config.values() if isinstance(config, dict) else ():
            name = str((meta or {}).get("path_name", ""))
            if not _PLAIN.match(name) or name.startswith("."):
                raise Refused(f"{rel} names a payload path {name[:60]!r} that is not a plain file name")
            target = f"{folder}/{name}"
            as_raw = not meta.get("use_pickle") and (folder == "data/weights" or name.startswith("tensor_"))
            (raw if as_raw else pickled).add(target)
    return raw - pickled


def _check_entry(z: zipfile.ZipFile, rel: str, info: zipfile.ZipInfo, raw: set[str], *, trust_pickle: bool,
                 trust_code: bool) -> None:
    base = posixpath.basename(rel)
    if rel in HARMLESS or rel.startswith(("extra/", "extra_files/")) or rel in raw:
        return
    if rel.startswith("data/aotinductor/") or base.endswith((".so", ".dll", ".dylib", ".pyd")):
        if not trust_code:
            raise Refused(f"{rel} is compiled code (AOTInductor), which loading would run; give --trust-code "
                          "if you trust the file")
        return
    if rel.endswith(".json"):
        if not trust_code:
            _check_json(read_entry(z, info), rel)
        return
    if trust_pickle:
        return
    hint = "; give --trust-pickle if you trust the file"
    if base.startswith("custom_obj_"):
        raise Refused(f"{rel} is a serialized C++ object (torchbind), whose loading runs native code{hint}")
    data = read_entry(z, info)
    try:
        if base.startswith("opaque_obj_") and not data.startswith(ZIP_MAGIC):
            bad = first_refused(data, weights_only_allowed)
            if bad:
                raise Refused(f"needs the global {bad}, which is not weights-only data (unpickling it would run code)")
        else:
            check_torch_save(data)
    except Refused as exc:
        raise Refused(f"{rel} {exc}{hint}") from None


def _check_json(data: bytes, rel: str) -> None:
    try:
        doc = json.loads(data)
    except ValueError:
        raise Refused(f"{rel} is not valid JSON") from None
    why = _walk(doc)
    if why:
        raise Refused(f"{rel}: {why}; give --trust-code if you trust the file")


def _walk(obj: Any) -> str | None:
    """The first finding in a serialized ExportedProgram (any JSON: payload configs have nothing to find)."""
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, list):
            stack.extend(cur)
            continue
        if not isinstance(cur, dict):
            continue
        why = _dict_finding(cur)
        if why:
            return why
        stack.extend(cur.values())
    return None


def _dict_finding(d: dict) -> str | None:
    if isinstance(d.get("target"), str) and "inputs" in d and "outputs" in d:
        why = target_refusal(d["target"])
        if why:
            return f"the graph calls {why}"
    if isinstance(d.get("as_operator"), str):
        why = target_refusal(d["as_operator"])
        if why:
            return f"the graph passes the operator {why}"
    if "expr_str" in d:
        why = sym_refusal(d["expr_str"])
        if why:
            return f"a symbolic shape {why}"
    if isinstance(d.get("range_constraints"), dict):
        for key in d["range_constraints"]:
            why = sym_refusal(key)
            if why:
                return f"a range constraint {why}"
    if "guards_code" in d:
        for guard in d["guards_code"] or []:
            why = guard_refusal(guard)
            if why:
                return f"a guard {why}"
    if isinstance(d.get("nodes"), list) and isinstance(d.get("inputs"), list):  # a graph: its string inputs
        for inp in d["inputs"]:                                                  # are pasted into guard code
            if isinstance(inp, dict) and "as_string" in inp and not _SAFE_STRING.match(str(inp["as_string"])):
                return "a string input holds quotes, backslashes or line breaks (it would become guard code)"
    return None


def target_refusal(target: str) -> str | None:
    """Why a node target (``torch.ops.aten.add.Tensor``, ``_operator.getitem``, ...) is refused, or None."""
    parts = target.split(".")
    if target.startswith("torch.ops.") and len(parts) in (4, 5):
        why = torch_ops.op_refusal(parts[2], parts[3], graph=True)
        if why is None and len(parts) == 5 and not _SYM_NAME.match(parts[4]):
            why = f"{target} is not an operator overload"
        return None if why is None else f"{target} ({why})"
    if len(parts) == 2 and (
        (parts[0] == "_operator" and parts[1] in OPERATOR_FUNCTIONS)
        or (parts[0] == "math" and parts[1] in MATH_FUNCTIONS)
        or (parts[0] == "torch" and parts[1] in SYM_FUNCTIONS)
    ):
        return None
    return f"{target[:100]!r}, which is not an allowed operator"


def _expr_refusal(text: Any, *, names: frozenset[str] | None, call_ok, attr_ok=lambda node, strings: False,
                  mark=lambda tree, strings: None) -> str | None:
    """Why ``text`` is not a one-line arithmetic expression of the allowed shape (checked with :mod:`ast`).

    ``names``: the names it may read (None: any symbol-like name); ``call_ok(call, strings)``: whether a call is
    allowed (it adds the string constants it accepts to ``strings``); ``attr_ok``: allowed attributes/subscripts;
    ``mark(tree, strings)``: adds other accepted string constants.
    """
    if not isinstance(text, str) or len(text) > 20000 or "\n" in text or "\r" in text:
        return "is not a one-line expression"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return f"{text[:80]!r} is not an expression"
    shown = repr(text[:80])
    strings: set[int] = set()
    mark(tree, strings)
    nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Call) and not call_ok(node, strings):
            return f"{shown} calls something other than arithmetic functions"
        if isinstance(node, (ast.Attribute, ast.Subscript)) and not attr_ok(node, strings):
            return f"{shown} reads an attribute or item that is not an input size"
    for node in nodes:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and id(node) not in strings:
                return f"{shown} holds a string"
            if isinstance(node.value, int) and abs(node.value) > 2**64:
                return f"{shown} holds an oversized number"
            if not isinstance(node.value, (int, float, bool, str, type(None))):
                return f"{shown} holds a {type(node.value).__name__} constant"
        elif isinstance(node, ast.Name):
            if names is None and not (_SYM_NAME.match(node.id) and not node.id.startswith("__")):
                return f"{shown} uses the name {node.id!r}"
            if names is not None and node.id not in names:
                return f"{shown} uses the name {node.id!r}"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _small(node.right):
            return f"{shown} raises to a non-constant or large power"
        elif not isinstance(node, (*_EXPR_NODES, ast.Attribute, ast.Subscript, ast.keyword)):
            return f"{shown} uses {type(node).__name__}, which is not arithmetic"
    return None


def _small(node: ast.AST) -> bool:
    """A constant exponent of at most 64 (``2``, ``Integer(2)``): sympy computes powers exactly."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Integer", "Rational",
                                                                                          "Float") and node.args:
        node = node.args[0]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and abs(node.value) <= 64


SREPR_CALLS = frozenset({"Add", "Mul", "Pow", "Symbol", "Integer", "Rational", "Float"})
ASSUMPTIONS = frozenset({"positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero",
                         "nonzero", "even", "odd", "precision"})


def _sym_call_ok(call: ast.Call, strings: set[int]) -> bool:
    if not isinstance(call.func, ast.Name) or call.func.id not in SYMPY_CALLS | SREPR_CALLS:
        return False
    name = call.func.id
    if any(k.arg not in ASSUMPTIONS or not isinstance(k.value, ast.Constant) for k in call.keywords):
        return False
    if name in ("Pow", "PowByNatural", "FloatPow") and (len(call.args) != 2 or not _small(call.args[1])):
        return False
    if name in ("Symbol", "Integer", "Float", "Rational") and call.args and isinstance(call.args[0], ast.Constant):
        value = call.args[0].value
        if isinstance(value, str) and (re.match(r"^[-+.\w]+$", value) and (name != "Symbol" or _SYM_NAME.match(value))):
            strings.add(id(call.args[0]))
    return True


def sym_refusal(text: Any) -> str | None:
    """Why a symbolic expression (parsed by torch with ``sympy.sympify``, i.e. ``eval``) is refused, or None.

    It may be sympy's ``srepr`` (``Mul(Integer(2), Symbol('s0', positive=True, integer=True))``) or plain
    arithmetic (``2*s0``) over symbols, numbers and the functions of :data:`SYMPY_CALLS`.
    """
    return _expr_refusal(text, names=None, call_ok=_sym_call_ok)


GUARD_NAMES = frozenset({"L", "math", "inf", "max", "min", "abs", "IsNonOverlappingAndDenseIndicator"})


def _guard_attr_ok(node: ast.AST, strings: set[int]) -> bool:
    if isinstance(node, ast.Subscript):  # L['x'], L['x'].size()[0]
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            if not key.value.isidentifier():
                return False
            strings.add(id(key))
        return True
    if not isinstance(node, ast.Attribute):
        return False
    if isinstance(node.value, ast.Name) and node.value.id == "math":
        return node.attr in MATH_FUNCTIONS | {"inf", "nan", "pi", "e"}
    return node.attr in GUARD_METHODS


def _guard_call_ok(call: ast.Call, strings: set[int]) -> bool:
    if call.keywords:
        return False
    if isinstance(call.func, ast.Name):
        return call.func.id in GUARD_NAMES - {"L", "math", "inf"}
    return isinstance(call.func, ast.Attribute) and _guard_attr_ok(call.func, strings)


def _compared_strings(tree: ast.AST, strings: set[int]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            strings.update(id(c) for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)
                           and isinstance(c.value, str) and _SAFE_STRING.match(c.value))


def guard_refusal(text: Any) -> str | None:
    """Why a guard (Python that ``ExportedProgram.module()`` compiles and runs) is refused, or None.

    A guard compares input sizes: ``L['x'].size()[0] >= 2``, ``max(1, 3*(L['x'].size()[0] // 2)) == 3``,
    ``math.isnan(L['y'])``; a compared string input (``L['s'] == 'abc'``) may hold no quote or backslash.
    """
    return _expr_refusal(text, names=GUARD_NAMES, call_ok=_guard_call_ok, attr_ok=_guard_attr_ok,
                         mark=_compared_strings)
