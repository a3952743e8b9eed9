"""Import: pick the importer for a source (``--from``, an importer's ``matches``, the suffix) and load it into a
``Model`` of its native form with its IO contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadInput, ToolchainMissing
from ..model import Model, pinned_shapes
from ..plugins import registry
from ..records import Importer, did_you_mean, load_ref


def where(source: Any) -> str:
    """How an error names the source: its path, or ``<nn.Module>`` for an object."""
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"


def pick_importer(source: Any, source_form: str | None = None) -> Importer:
    importers = registry().importers.values()
    if source_form:
        for imp in importers:
            if source_form in (imp.name, imp.form):
                return imp
        known = sorted({i.name for i in importers} | {i.form for i in importers})
        raise BadInput(f"--from {source_form!r} is not an installed importer (installed: {', '.join(known)})"
                       f"{did_you_mean(source_form, known)}", stage="import")
    for imp in importers:
        if imp.matches is not None:
            try:
                if load_ref(imp.matches)(source):
                    return imp
            except Exception:  # noqa: BLE001 - a recogniser that cannot tell does not claim the source
                continue
    if isinstance(source, (str, Path)):
        return _by_suffix(Path(source), importers)
    raise BadInput(f"no installed importer takes a {type(source).__name__}", stage="import")


def _by_suffix(path: Path, importers: Any) -> Importer:
    for imp in importers:
        if path.suffix.lower() in imp.suffixes:
            return imp
    if not path.exists():
        raise BadInput("no such file or folder", file=path, stage="import")
    suffixes = sorted({s for i in importers for s in i.suffixes})
    raise BadInput(f"cannot tell the model format from {path.suffix or 'a name without suffix'!r} "
                   f"(known: {', '.join(suffixes)}); give --from FORMAT", file=path, stage="import")


def load(source: Any, *, profiles: dict[str, list[tuple[int, ...]]] | None = None, source_form: str | None = None,
         options: dict[str, Any] | None = None) -> Model:
    """Import a model (any form an importer accepts) and read its IO contract. ``profiles``: ``--input-shape``
    (each input's shape, or min/opt/max), pinned at the verification shape."""
    imp = pick_importer(source, source_form)
    missing = [r for r in imp.requirements if not r.satisfied()]
    if missing:
        raise ToolchainMissing(f"reading this model needs {missing[0].what}", file=where(source), stage="import",
                               hint=missing[0].hint)
    model = load_ref(imp.load)(source, input_shapes=pinned_shapes(profiles or {}) or None, options=dict(options or {}))
    if isinstance(source, (str, Path)):
        model.meta.setdefault("source_path", str(source))
    return model
