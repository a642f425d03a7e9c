"""Building the sandbox image: base choice, offline bootstrap errors, the image itself."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError, ImageNotFound

from macrohard._resources import resource_dir
from macrohard.errors import SandboxError
from macrohard.sandbox.image import (
    OFFLINE_BASE,
    REGISTRY_BASE,
    build_image,
    ensure_base,
    image_exists,
    read_packages,
)


class FakeImages:
    """The slice of `client.images` that base selection uses."""

    def __init__(self, present: set[str], fail: bool = False) -> None:
        self.present = present
        self.fail = fail
        self.pulls: list[str] = []

    def get(self, name: str) -> object:
        if self.fail:
            raise APIError("engine on fire")
        if name not in self.present:
            raise ImageNotFound(name)
        return object()

    def pull(self, repository: str, tag: str) -> Any:
        self.pulls.append(f"{repository}:{tag}")
        raise APIError("registry-1.docker.io: no such host")


class FakeClient:
    def __init__(self, present: set[str], fail: bool = False) -> None:
        self.images = FakeImages(present, fail)


def _quiet(line: str) -> None:
    pass


# ---- no engine needed ----------------------------------------------------------


def test_read_packages_skips_comments_and_blanks(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text("# header\npython3\n\n  git  # for the agents\n")
    assert read_packages(listing) == ["python3", "git"]


def test_bundled_package_list_has_what_the_sandbox_needs() -> None:
    packages = read_packages(resource_dir("docker") / "packages.txt")
    assert {"python3", "python3-pytest", "git", "procps", "coreutils"} <= set(packages)


def test_existing_offline_base_is_reused_without_pulling() -> None:
    client = FakeClient({OFFLINE_BASE})
    assert ensure_base(client, ["python3"], _quiet) == OFFLINE_BASE  # type: ignore[arg-type]
    assert client.images.pulls == []


def test_registry_base_wins_when_present() -> None:
    client = FakeClient({REGISTRY_BASE, OFFLINE_BASE})
    assert ensure_base(client, ["python3"], _quiet) == REGISTRY_BASE  # type: ignore[arg-type]


def test_no_registry_and_no_bootstrap_tool_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("macrohard.sandbox.image.shutil.which", lambda name: None)
    client = FakeClient(set())
    with pytest.raises(SandboxError) as caught:
        ensure_base(client, ["python3"], _quiet)  # type: ignore[arg-type]
    assert client.images.pulls == [REGISTRY_BASE]
    assert caught.value.hint is not None
    assert "apt-get install mmdebstrap" in caught.value.hint
    assert "registry" in caught.value.hint


def test_engine_failures_become_sandbox_errors() -> None:
    with pytest.raises(SandboxError, match="engine on fire"):
        image_exists(FakeClient(set(), fail=True), "anything")  # type: ignore[arg-type]


# ---- against the engine --------------------------------------------------------


@pytest.mark.docker
def test_image_exists(docker_client: docker.DockerClient, sandbox_image: str) -> None:
    assert image_exists(docker_client, sandbox_image)
    assert not image_exists(docker_client, "macrohard-missing:nope")


@pytest.mark.docker
def test_image_is_labelled_small_and_free_of_host_settings(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    config = docker_client.images.get(sandbox_image).attrs["Config"]
    assert config["Labels"]["org.opencontainers.image.title"] == "macrohard-sandbox"
    # Only containers macrohard starts carry the sandbox label; one baked into the
    # image would make `prune` remove any container built from it.
    assert "macrohard.sandbox" not in config["Labels"]
    assert config["WorkingDir"] == "/workspace"
    assert [name.split("=", 1)[0] for name in config["Env"] or []] in ([], ["PATH"])


@pytest.mark.docker
def test_image_has_the_tools_commands_need(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    probe = "python3 -m pytest --version && git --version && ps --version && timeout --version"
    output = docker_client.containers.run(
        sandbox_image, ["sh", "-c", probe], remove=True, network_mode="none", stderr=True
    ).decode()
    for tool in ("pytest", "git version", "procps", "timeout (GNU coreutils)"):
        assert tool in output


@pytest.mark.docker
def test_build_image_returns_the_id_of_the_tag(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    # The base and the layers already exist, so this build is offline and cached.
    tag = f"macrohard-sandbox:test-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    try:
        image_id = build_image(docker_client, tag, on_progress=lines.append)
        assert image_id == docker_client.images.get(tag).id
        assert any("Successfully tagged" in line for line in lines)
    finally:
        docker_client.images.remove(tag, noprune=True)
