"""The manifest beside every artifact (``manifest.json``, schema ``edgeconv.manifest/1``), written and read back.

A manifest is untrusted input when it is read (docs/security.md): it may have been edited, or come with an artifact
from elsewhere. Reading one checks, before anything runs:

- its schema and fields; every artifact file it names is a relative path inside its folder, present, and has the
  sha256 the manifest recorded when the artifact was made (a changed or swapped file is refused);
- its ``runner_options``: only the settings the artifact's runner declares (``RunnerSpec.options``, name -> type),
  each of its declared type; never an executable or a path to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import sha256_path
from .errors import BadInput
from .model import IOContract, Model
from .plugins import registry
from .report import MANIFEST_SCHEMA, dumps

FILE = "manifest.json"
_JSON_SCALARS = (str, int, float, bool, type(None))


def file_hashes(folder: Path, files: list[Path]) -> dict[str, str]:
    """``{relative path: sha256}`` of every artifact file."""
    return {str(Path(f).relative_to(folder)): sha256_path(Path(f)) for f in files}


def write(folder: Path, manifest: dict[str, Any], files: list[Path]) -> Path:
    """Record the artifact's files (relative paths and sha256) and write ``manifest.json`` into ``folder``."""
    hashes = file_hashes(folder, files)
    manifest = {**manifest, "artifact": list(hashes), "files": hashes}
    path = folder / FILE
    path.write_text(dumps(manifest, indent=2), encoding="utf-8")
    return path


def _bad(file: Path, why: str) -> BadInput:
    return BadInput(f"not a valid edgeconv manifest: {why}", file=file, stage="manifest")


def read(file: Path) -> dict[str, Any]:
    """Read and check a manifest (the module doc's rules)."""
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"unreadable manifest ({' '.join(str(exc).split())[:200]})", file=file,
                       stage="manifest") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise _bad(file, f"schema is not {MANIFEST_SCHEMA!r}")
    files = manifest.get("artifact")
    if not isinstance(manifest.get("form"), str) or not isinstance(files, list) or not files:
        raise _bad(file, "'form' or 'artifact' is missing")
    _check_files(file, files, manifest.get("files"))
    try:
        IOContract.from_dict(manifest["io"])
        if manifest.get("source_io") is not None:
            IOContract.from_dict(manifest["source_io"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(file, f"'io' is not an IO contract ({type(exc).__name__}: {exc})") from None
    manifest["runner_options"] = check_runner_options(file, manifest["form"], manifest.get("runner_options"))
    return manifest


def _check_files(file: Path, files: list[Any], hashes: Any) -> None:
    base = file.parent.resolve()
    if not isinstance(hashes, dict):
        raise _bad(file, "it records no sha256 of the artifact's files (made by an older edgeconv?): convert again")
    for name in files:
        if not isinstance(name, str) or not name or Path(name).is_absolute():
            raise _bad(file, f"artifact file {name!r} is not a relative path")
        target = (base / name).resolve()
        if base not in target.parents:
            raise _bad(file, f"artifact file {name!r} points outside the folder")
        if not target.is_file():
            raise _bad(file, f"artifact file {name!r} is missing")
        want = hashes.get(name)
        if not isinstance(want, str):
            raise _bad(file, f"artifact file {name!r} has no recorded sha256")
        if sha256_path(target) != want:
            raise BadInput(f"the artifact file {name!r} changed since edgeconv made it (its sha256 differs from the "
                           "manifest's): convert again", file=file, stage="manifest")


def check_runner_options(file: Path, form: str, options: Any) -> dict[str, Any]:
    """The manifest's runner settings, allowed by the runner's declaration and of its declared types."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise _bad(file, "'runner_options' is not an object")
    spec = registry().runners.get(form)
    allowed = dict(spec.options) if spec is not None and spec.options is not None else None
    for key, value in options.items():
        if allowed is not None and key not in allowed:
            raise _bad(file, f"runner option {key!r} is not one the {form} runner takes from a manifest "
                             f"(it takes: {', '.join(sorted(allowed)) or 'none'})")
        want = allowed.get(key) if allowed is not None else None
        if not _typed(value, want):
            kind = want.__name__ if isinstance(want, type) else "a JSON value"
            raise _bad(file, f"runner option {key!r} is {type(value).__name__}, not {kind}")
    return dict(options)


def _typed(value: Any, want: Any) -> bool:
    if want is None:  # an undeclared runner: plain JSON values only
        return isinstance(value, _JSON_SCALARS) or (isinstance(value, list) and all(isinstance(v, _JSON_SCALARS)
                                                                                    for v in value))
    if value is None:
        return True
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want in (list, tuple):
        return isinstance(value, list)
    if want is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, want)


def load_artifact(path: str | Path) -> tuple[Model, dict[str, Any] | None]:
    """An output folder (its manifest checked) as a ``Model``, and the manifest; ``(None, None)`` for a plain model
    file, which the caller imports as a source."""
    p = Path(path)
    manifest_file = p / FILE if p.is_dir() else None
    if manifest_file is None or not manifest_file.is_file():
        return None, None  # type: ignore[return-value]
    manifest = read(manifest_file)
    io = IOContract.from_dict(manifest["io"])
    return Model(form=manifest["form"], io=io, path=p / manifest["artifact"][0]), manifest


def check_source(manifest: dict[str, Any], source_file: Path | None) -> None:
    """``verify``: the source given is the one the artifact was made from (same sha256), else bad input."""
    want = (manifest.get("source") or {}).get("sha256")
    if not want or source_file is None or not source_file.exists():
        return
    have = sha256_path(source_file)
    if have != want:
        raise BadInput(f"is not the source this artifact was made from (sha256 {have[:12]}... vs the manifest's "
                       f"{want[:12]}...)", file=source_file, stage="verify",
                       hint="verify the artifact against the model it was converted from")
