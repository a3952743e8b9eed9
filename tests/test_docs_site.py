"""The documentation site: `mkdocs build --strict` passes, loads nothing from outside, has a page per target
and per public API entry, hook sections with examples, and a CLI reference that matches the CLI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeconv import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_cli_reference_is_up_to_date():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_cli_reference_covers_every_command_and_option(monkeypatch, fresh_plugins):
    import typer.main

    from edgeconv.cli import make_app

    text = (DOCS / "cli.md").read_text()
    monkeypatch.setenv("EDGECONV_LOAD_PLUGINS", "")  # built-ins only, as the generator
    group = typer.main.get_command(make_app())
    for name, cmd in group.commands.items():
        assert f"## `edgeconv {name}`" in text
        for p in cmd.params:
            if p.param_type_name == "option":
                assert f"`{p.opts[0]}`" in text, (name, p.opts)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        message = "mkdocs is not installed (pip install -r requirements-docs.txt)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    warnings = [line for line in res.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert warnings == [], warnings
    return out


def test_the_site_builds_strictly_with_every_page(site):
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md") if p.relative_to(DOCS).parts[0] != "examples"}
    for page in pages:
        built = site / ("index.html" if page.name == "index" else page / "index.html")
        assert built.is_file(), f"docs/{page}.md was not built"


def test_the_site_loads_nothing_from_outside(site):
    remote = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert not remote.search(text), f"{page.relative_to(site)}: {remote.search(text).group(0)}"


def test_the_api_reference_is_rendered_from_docstrings(site):
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("edgeconv.convert", "edgeconv.verify", "edgeconv.bench", "edgeconv.load", "edgeconv.inspect",
                 "edgeconv.plugin.Target", "edgeconv.plugin.Importer", "edgeconv.plugin.Pass",
                 "edgeconv.plugin.RunnerSpec", "edgeconv.plugin.Option", "edgeconv.plugin.Requirement",
                 "edgeconv.plugin.Runner", "edgeconv.plugin.Model", "edgeconv.plugin.IOContract",
                 "edgeconv.plugin.Job", "edgeconv.plugin.Artifact"):
        assert f'id="{name}"' in html, name
    assert "calibration" in html  # a docstring's text, not only the headings


def test_the_tutorial_shows_the_example_package_verbatim(site):
    import html as _html

    page = (site / "plugin-tutorial" / "index.html").read_text(encoding="utf-8")
    text = _html.unescape(re.sub(r"<[^>]+>", "", page))  # code is highlighted token by token
    for path in ("pyproject.toml", "src/edgeconv_example/hooks.py", "src/edgeconv_example/export.py",
                 "tests/test_example.py"):
        for line in (DOCS / "examples" / "edgeconv-example" / path).read_text().splitlines():
            assert line.strip() in text, (path, line)
    assert "--8<--" not in text  # every snippet was included


def test_the_public_api_is_in_the_api_page():
    import edgeconv

    text = (DOCS / "api.md").read_text()
    for name in edgeconv.__all__:
        if name not in ("__version__", "hookimpl"):
            assert f"::: edgeconv.{name}" in text, name


HOOKS = [name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "edgeconv_spec")]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_section_has_an_example(hook):
    text = (DOCS / "hooks.md").read_text()
    start = text.index(f"### `{hook}(")
    end = text.find("\n## ", start)
    section = text[start:end if end > 0 else None]
    assert "```python" in section and f"def {hook}(" in section, f"the {hook} section has no example"


def _repo_targets() -> list[tuple[str, str]]:
    """(target, where) for the built-in target and every plugin in this repository."""
    from edgeconv.records import KNOWN_TARGETS

    found = [("onnxruntime", "built in")]
    for name, (dist, _title, _hint) in sorted(KNOWN_TARGETS.items()):
        if (ROOT / "plugins" / dist).is_dir():
            found.append((name, f"plugins/{dist}"))
    return found


@pytest.mark.parametrize(("target", "where"), _repo_targets())
def test_every_target_in_the_repository_has_a_page(target, where):
    assert (DOCS / "targets" / f"{target}.md").is_file(), f"{where} has no docs/targets/{target}.md"
