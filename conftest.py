"""Shared fixtures for tests/ and plugins/*/tests: the digits sample, a fresh plugin manager, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeconv import plugins
from edgeconv.demo import sample_files


@pytest.fixture(scope="session")
def digits() -> dict[str, Path]:
    """The shipped digits CNN, its calibration split and its labelled test split."""
    return sample_files()


@pytest.fixture(scope="session", autouse=True)
def inputs_never_modified():
    """Every test reads the shipped sample files; none may change them (inputs are never modified)."""
    from edgeconv.data import sha256_path

    before = {k: sha256_path(p) for k, p in sample_files().items()}
    yield
    after = {k: sha256_path(p) for k, p in sample_files().items()}
    assert after == before, f"a test modified the shipped sample files: {sorted(k for k in before if before[k] != after[k])}"


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager loaded from scratch (env variables read again), reset afterwards."""
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture
def cli():
    """Invoke the CLI in-process: ``cli("targets", "--json")`` -> click Result."""
    from edgeconv.cli import make_app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(make_app(), list(args))

    return invoke
