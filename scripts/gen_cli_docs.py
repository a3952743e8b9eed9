"""Write docs/cli.md, the command-line reference, from the Typer app itself.

    python scripts/gen_cli_docs.py            # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check    # exit 1 if docs/cli.md is out of date (tests/test_docs_site.py)

The app is built with the built-in plugins only (``EDGECONV_LOAD_PLUGINS`` set and empty), so the page
documents the core CLI the same way on every machine; commands a plugin adds are documented on its
target page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"

HEADER = """# Command-line reference

Generated from the Typer app by `scripts/gen_cli_docs.py`; do not edit by hand (a test fails when this page
and the CLI differ). The same text is in `edgeconv COMMAND --help`.

Exit codes, for every command: 0 success · 1 verification or a budget failed · 2 bad usage or bad input ·
3 a toolchain is missing · 4 the toolchain failed (see [concepts](concepts.md#exit-codes)).
"""


def build_command() -> Any:
    os.environ["EDGECONV_LOAD_PLUGINS"] = ""  # built-ins only: the same page on every machine
    import typer.main

    from edgeconv import plugins
    from edgeconv.cli import make_app

    plugins.reset()
    try:
        return typer.main.get_command(make_app())
    finally:
        plugins.reset()


def _type_name(param: Any) -> str:
    kind = getattr(param.type, "name", "") or ""
    if getattr(param, "is_flag", False):
        return "flag"
    if kind in ("path", "file", "directory"):
        return "PATH"
    return {"text": "TEXT", "str": "TEXT", "string": "TEXT", "integer": "INTEGER", "int": "INTEGER", "float": "FLOAT",
            "boolean": "BOOLEAN", "bool": "BOOLEAN"}.get(kind, kind.upper() or "TEXT")


def _default(param: Any) -> str:
    value = param.default
    if getattr(param, "is_flag", False) or value is None or value == () or value == []:
        return ""
    if callable(value):
        return ""
    return f"`{value}`"


def _cell(text: str) -> str:
    text = " ".join((text or "").split()).replace("|", "\\|")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_command(name: str, cmd: Any) -> list[str]:
    lines = [f"## `edgeconv {name}`", ""]
    help_text = (cmd.help or "").strip()
    if help_text:
        lines += [help_text.split("\n\n")[0].strip(), ""]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option"]
    usage = " ".join([f"edgeconv {name}", *(f"{p.name.upper()}" + ("..." if p.nargs == -1 else "") for p in args),
                      "[OPTIONS]" if opts else ""]).strip()
    lines += ["```", usage, "```", ""]
    if args:
        lines += ["| argument | help |", "|---|---|"]
        for p in args:
            required = "" if p.required else " (optional)"
            lines.append(f"| `{p.name.upper()}` | {_cell(getattr(p, 'help', '') or '')}{required} |")
        lines.append("")
    if opts:
        lines += ["| option | type | default | help |", "|---|---|---|---|"]
        for p in opts:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            repeat = " (repeatable)" if getattr(p, "multiple", False) and "repeatable" not in (p.help or "") else ""
            lines.append(f"| {names} | {_type_name(p)} | {_default(p)} | {_cell(p.help or '')}{repeat} |")
        lines.append("")
    return lines


def render() -> str:
    group = build_command()
    lines = [HEADER.rstrip(), "", "## `edgeconv`", "", (group.help or "").strip(), "", "```",
             "edgeconv [--debug] [--version] COMMAND [ARGS]...", "```", ""]
    lines += ["| option | help |", "|---|---|"]
    for p in group.params:
        if p.param_type_name == "option":
            lines.append(f"| {', '.join(f'`{o}`' for o in p.opts)} | {_cell(p.help or '')} |")
    lines.append("")
    commands = group.commands
    lines += ["| command | what it does |", "|---|---|"]
    for name, cmd in commands.items():
        first = (cmd.help or "").strip().split("\n")[0]
        lines.append(f"| [`{name}`](#edgeconv-{name}) | {_cell(first)} |")
    lines.append("")
    for name, cmd in commands.items():
        lines += render_command(name, cmd)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
