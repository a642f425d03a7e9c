"""Building suites of cases in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cases import honest_script


@pytest.fixture
def make_case(tmp_path: Path) -> Callable[..., Path]:
    """make_case(name, spec=..., acceptance={file: text} or None, script=dict/str or None, settings=str or None)."""

    def make(
        name: str,
        *,
        spec: str | None = "# one\n\nA module one.py with one() returning 1.\n",
        acceptance: dict[str, str] | None = None,
        script: dict | str | None = "honest",
        settings: str | None = None,
        suite: str = "suite",
    ) -> Path:
        folder = tmp_path / suite / name
        folder.mkdir(parents=True)
        if spec is not None:
            (folder / "spec.md").write_text(spec)
        if acceptance is not None:
            (folder / "acceptance").mkdir()
            for file, text in acceptance.items():
                (folder / "acceptance" / file).write_text(text)
        if script == "honest":
            script = honest_script()
        if script is not None:
            (folder / "script.yaml").write_text(script if isinstance(script, str) else yaml.safe_dump(script))
        if settings is not None:
            (folder / "case.toml").write_text(settings)
        return folder

    return make


@pytest.fixture
def bundled_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts are written for the bundled roles, whatever ./roles holds."""
    from macrohard._resources import resource_dir

    monkeypatch.setenv("MACROHARD_ROLES_DIR", str(resource_dir("roles")))
