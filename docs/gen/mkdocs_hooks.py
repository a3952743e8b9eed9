"""MkDocs hooks (``hooks:`` in mkdocs.yml): one nav entry per target page and per benchmark page.

Each backend writes its own ``docs/targets/<target>.md`` (and a benchmark harness its own
``docs/benchmarks-<target>.md``); they join the nav here by themselves, so adding a backend never
means editing mkdocs.yml. Every other page must be listed in mkdocs.yml's nav: the build is strict
and an omitted page fails it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIRST = ("onnxruntime",)  # the built-in target leads


def _targets(docs: Path) -> list[dict[str, str]]:
    names = sorted((p.stem for p in (docs / "targets").glob("*.md")), key=lambda n: (n not in FIRST, n))
    return [{n: f"targets/{n}.md"} for n in names]


def _benchmarks(docs: Path) -> list[dict[str, str]]:
    pages = [{"All targets": "benchmarks.md"}] if (docs / "benchmarks.md").is_file() else []
    for p in sorted(docs.glob("benchmarks-*.md")):
        pages.append({p.stem.removeprefix("benchmarks-"): p.name})
    return pages


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    fill = {"Targets": _targets(docs), "Benchmarks": _benchmarks(docs)}
    for entry in config["nav"] or []:
        if isinstance(entry, dict):
            for key in entry:
                if key in fill:
                    entry[key] = fill[key]
    return config
