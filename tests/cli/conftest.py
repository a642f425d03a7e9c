"""Driving the real CLI in-process, on the demo's scripted model and the local sandbox fake.

The Docker sandbox is swapped for the local fake behind the SandboxProvider protocol (the
tests marked docker drive the real one); everything else is what a user runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import LocalSandboxProvider
from macrohard.cli import app


@pytest.fixture
def local_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("macrohard.cli.drive.sandbox_provider", lambda settings: LocalSandboxProvider())


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """`macrohard ARGS` in a fresh folder, with no model configured from the environment."""
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "MACROHARD_MODEL__MODEL", "MACROHARD_MODEL__BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> object:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    return invoke
