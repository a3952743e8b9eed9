"""Pickles read as data: which globals a pickle would import, found without unpickling it.

A pickle runs code through the globals it imports (``GLOBAL``, ``STACK_GLOBAL``, ``INST``) and then
calls (``REDUCE``, ``NEWOBJ``, ``BUILD``). :func:`pickle_globals` walks the opcodes with
``pickletools.genops`` (nothing is unpickled) and names every global; a caller compares them with an
allow-list. When every global is allowed, the only callables the pickle can reach are allowed ones, so
even ``torch.load(weights_only=False)`` (which ``torch.export.load`` uses) runs nothing else.

Refused outright, whatever the allow-list: extension-registry globals (``EXT1/2/4``: they import a name
the pickle does not spell), a ``STACK_GLOBAL`` whose module or name is not a constant string, a text
persistent id (``PERSID``: torch writes ``BINPERSID``), out-of-band buffers, and anything
``genops`` cannot parse.

:data:`TORCH_WEIGHTS_ONLY` is torch's own weights-only allow-list
(``torch._weights_only_unpickler._get_allowed_globals``; globals a user added with
``torch.serialization.add_safe_globals`` are *not* honoured).
"""

from __future__ import annotations

import _compat_pickle
import functools
import io
import pickletools
import zipfile
from collections.abc import Callable

_MARK = object()
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_REFUSED_OPS = {
    "EXT1": "an extension-registry global (EXT1)",
    "EXT2": "an extension-registry global (EXT2)",
    "EXT4": "an extension-registry global (EXT4)",
    "PERSID": "a text persistent id (PERSID)",
    "NEXT_BUFFER": "an out-of-band buffer (NEXT_BUFFER)",
    "READONLY_BUFFER": "an out-of-band buffer (READONLY_BUFFER)",
}
ZIP_MAGIC = b"PK\x03\x04"


class Refused(Exception):
    """A pickle or archive that cannot be read as data; ``str(exc)`` says why (the importer adds the file)."""


def pickle_globals(data: bytes) -> tuple[list[str], int]:
    """Every global (``module.qualname``) the first pickle in ``data`` imports, and the offset after its STOP.

    Names are mapped as Python's unpickler maps them for protocols < 3 (``__builtin__`` -> ``builtins``).
    Raises :class:`Refused` for the opcodes listed in the module docstring or a malformed pickle.
    """
    found: list[str] = []
    stack: list[object] = []
    memo: dict[int, object] = {}
    proto = 0
    end = 0

    def pop() -> object:
        if not stack or stack[-1] is _MARK:
            raise Refused("is not a well-formed pickle (stack underflow)")
        return stack.pop()

    def pop_mark() -> None:
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if not stack:
            raise Refused("is not a well-formed pickle (no MARK)")
        stack.pop()

    try:
        for op, arg, pos in pickletools.genops(data):
            name = op.name
            end = pos + 1
            if name in _REFUSED_OPS:
                raise Refused(f"uses {_REFUSED_OPS[name]}")
            if name == "PROTO":
                proto = int(arg)
            elif name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
                found.append(_fix_name(module, qual, proto))
                if name == "INST":
                    pop_mark()
                stack.append(None)
            elif name == "STACK_GLOBAL":
                qual, module = pop(), pop()
                if not (isinstance(module, str) and isinstance(qual, str)):
                    raise Refused("imports a global whose name is computed (STACK_GLOBAL of non-constant strings)")
                found.append(_fix_name(module, qual, proto))
                stack.append(None)
            elif name in _STRING_OPS:
                stack.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1] if stack else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(int(arg)))
            elif name == "DUP":
                stack.append(stack[-1] if stack else None)
            elif name == "STOP":
                break
            else:
                _apply(op, stack, pop, pop_mark)
    except Refused:
        raise
    except Exception as exc:  # genops: ValueError for a truncated or unknown opcode, ...
        raise Refused(f"is not a readable pickle ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    return found, end


def _apply(op: pickletools.OpcodeInfo, stack: list[object], pop: Callable[[], object], pop_mark: Callable[[], None]) -> None:
    """The generic stack effect of an opcode (its values are not tracked: only strings matter here)."""
    before = op.stack_before
    if pickletools.markobject in before:
        pop_mark()
        for _ in range(before.index(pickletools.markobject)):
            pop()
    else:
        for _ in before:
            pop()
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else None)


def _fix_name(module: str, qual: str, proto: int) -> str:
    if proto < 3:  # Unpickler(fix_imports=True) maps Python 2 names for protocols < 3
        if (module, qual) in _compat_pickle.NAME_MAPPING:
            module, qual = _compat_pickle.NAME_MAPPING[(module, qual)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if module == "torch.tensor":  # torch's UnpicklerWrapper maps this module name
        module = "torch._tensor"
    return f"{module}.{qual}"


def first_refused(data: bytes, allowed: Callable[[str], bool]) -> str | None:
    """The first global of the pickle in ``data`` that ``allowed`` refuses, or None (raises :class:`Refused`)."""
    names, _ = pickle_globals(data)
    return next((n for n in names if not allowed(n)), None)


@functools.cache
def torch_weights_only() -> frozenset[str]:
    """torch's weights-only allow-list (torch 2.13): tensors, storages, dtypes, OrderedDict, rebuild functions."""
    from torch import _weights_only_unpickler  # the framework's own list; plugins may import their framework

    return frozenset(_weights_only_unpickler._get_allowed_globals())


def weights_only_allowed(name: str) -> bool:
    return name in torch_weights_only()


def check_torch_save(blob: bytes) -> None:
    """A ``torch.save`` payload that ``torch.load(weights_only=False)`` would read: refuse unless it is data.

    Only the zip format is taken: the legacy format unpickles several pickles in a row before torch looks at
    anything, and ``torch.export.save`` never writes it. A zip holding ``constants.pkl`` is a TorchScript
    archive, which ``torch.load`` hands to ``torch.jit.load`` (running its code): refused too.
    """
    if not blob.startswith(ZIP_MAGIC):
        raise Refused("is in the legacy torch.save format (not a zip), which is unpickled without any check")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            infos = z.infolist()
            unique_names(infos)
            if any(i.filename.rsplit("/", 1)[-1] == "constants.pkl" for i in infos):
                raise Refused("holds a TorchScript archive, which torch.load would run as code")
            for info in infos:
                if info.filename.endswith(".pkl"):
                    bad = first_refused(read_entry(z, info), weights_only_allowed)
                    if bad:
                        raise Refused(f"needs the global {bad}, which is not weights-only data (unpickling it "
                                      "would run code)")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise Refused(f"is not a readable torch.save archive ({' '.join(str(exc).split())[:120]})") from None


MAX_INFLATED = 256 * 2**20


def read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """An entry's bytes; a compressed entry may not inflate beyond 256 MiB (torch stores its archives' entries
    uncompressed, so only a decompression bomb needs more)."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_INFLATED:
        raise Refused(f"has a compressed entry {info.filename!r} of {info.file_size:,} bytes (torch never writes one; "
                      "a decompression bomb does)")
    return z.read(info)


def unique_names(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse an archive with two entries of one name (any case): the reader torch uses may pick the other one."""
    seen: set[str] = set()
    for info in infos:
        key = info.filename.lower()
        if key in seen:
            raise Refused(f"has two entries named {info.filename!r} (which one a reader takes is not defined)")
        seen.add(key)
