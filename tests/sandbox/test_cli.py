"""`macrohard sandbox doctor` and `macrohard sandbox prune`, through the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound
from typer.testing import CliRunner

import macrohard.sandbox.docker as sandbox_docker
from macrohard.cli import app
from macrohard.config import SandboxSettings
from macrohard.sandbox.docker import DockerSandboxProvider
from macrohard.sandbox.doctor import run_doctor
from macrohard.sandbox.lifecycle import owner_id

runner = CliRunner()
CHECKS = [
    "engine", "image", "sandbox starts", "command runner", "network", "user", "capabilities",
    "no-new-privileges", "root file system", "init as PID 1", "environment", "Docker socket",
    "/tmp tmpfs", "memory limit", "process limit", "CPU limit", "time limit",
]


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # so no table cell wraps


def doctor(tmp_path: Path, config: str = "") -> Any:
    (tmp_path / "macrohard.toml").write_text(config)
    result = runner.invoke(app, ["sandbox", "doctor", "--config", str(tmp_path / "macrohard.toml")],
                           catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def rows(output: str) -> dict[str, str]:
    """check name -> its status cell, from the table."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 4 and cells[0] in CHECKS:
            found[cells[0]] = cells[3]
    return found


def test_doctor_without_an_engine_fails_on_the_first_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    result = doctor(tmp_path)
    assert result.exit_code == 1
    assert rows(result.output) == {"engine": "FAIL"}
    assert "no Docker engine answers" in result.output


@pytest.mark.docker
def test_doctor_passes_every_check_with_the_defaults(tmp_path: Path, sandbox_image: str) -> None:
    result = doctor(tmp_path, f'[sandbox]\nimage = "{sandbox_image}"\n')
    assert result.exit_code == 0, result.output
    assert rows(result.output) == {name: "ok" for name in CHECKS}
    assert "weakened" not in result.output


@pytest.mark.docker
def test_doctor_reports_a_missing_image(tmp_path: Path) -> None:
    result = doctor(tmp_path, '[sandbox]\nimage = "macrohard-missing:nope"\n')
    assert result.exit_code == 1
    assert rows(result.output) == {"engine": "ok", "image": "FAIL"}
    assert "macrohard sandbox build" in result.output


@pytest.mark.docker
def test_doctor_lists_weakened_settings_and_checks_them_as_set(tmp_path: Path, sandbox_image: str) -> None:
    result = doctor(tmp_path, f'[sandbox]\nimage = "{sandbox_image}"\nread_only = false\n')
    assert result.exit_code == 0, result.output
    assert "weakened: read_only = false" in result.output
    assert rows(result.output)["root file system"] == "ok"


@pytest.mark.docker
def test_doctor_fails_a_limit_that_did_not_take_effect(
    docker_client: docker.DockerClient, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An engine that accepts the option and ignores it looks like this from inside.
    original = DockerSandboxProvider._run_options

    def dropped(self: DockerSandboxProvider, *args: Any) -> dict[str, Any]:
        options = original(self, *args)
        options.pop("pids_limit")
        options["security_opt"] = []
        return options

    monkeypatch.setattr(DockerSandboxProvider, "_run_options", dropped)
    report = run_doctor(SandboxSettings(image=sandbox_image), lambda: docker_client)
    failed = {c.name for c in report.checks if not c.ok}
    assert failed == {"process limit", "no-new-privileges"} and not report.ok


@pytest.mark.docker
def test_prune_removes_orphans_and_keeps_live_sandboxes(
    docker_client: docker.DockerClient, sandbox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {"macrohard.test": f"cli-prune-{uuid.uuid4().hex[:8]}"}
    provider = DockerSandboxProvider(SandboxSettings(image=sandbox_image), docker_client)
    live = provider.start(tmp_path, labels=labels)
    with monkeypatch.context() as mp:
        # This pid with another start time: a crashed run whose pid was reused.
        mp.setattr(sandbox_docker.lifecycle, "owner_id", lambda: owner_id().rsplit(":", 1)[0] + ":1")
        orphan = provider.start(tmp_path, labels=labels)
    result = runner.invoke(app, ["sandbox", "prune"], catch_exceptions=False)
    assert result.exit_code == 0 and result.output.startswith("removed ")
    with pytest.raises(NotFound):
        docker_client.containers.get(orphan.id)
    assert docker_client.containers.get(live.id).status == "running"
    live.stop()


def test_prune_all_removes_every_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Not run for real: other runs on this engine would lose their sandboxes.
    calls: list[object] = []
    monkeypatch.setattr(sandbox_docker, "docker_client", lambda: None)
    monkeypatch.setattr(DockerSandboxProvider, "prune", lambda self, labels=None: calls.append(labels) or 3)
    monkeypatch.setattr(DockerSandboxProvider, "prune_orphans", lambda self, labels=None: calls.append("orphans") or 1)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["sandbox", "prune", "--all"]).output == "removed 3 containers\n"
    assert runner.invoke(app, ["sandbox", "prune"]).output == "removed 1 container\n"
    assert calls == [None, "orphans"]
