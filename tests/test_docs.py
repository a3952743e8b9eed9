"""Docs kept honest: every hook documented with its exact signature, and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edgeconv import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "edgeconv_spec")]


def test_there_are_hooks():
    assert set(HOOKS) == {"register_importers", "register_passes", "register_targets", "register_runners",
                          "register_commands", "register_toolchains", "register_metrics", "register_comparators",
                          "register_devices", "run_stage"}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({params})`" in (ROOT / "docs" / "hooks.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    text = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    assert f"def {hook}(" in text, f"no test implements the hook {hook}"
