"""Shared fixtures: a Docker client and the sandbox image, for tests marked `docker`,
and a real model server for tests marked `llama`.

When the session ends, no sandbox container this test process started may remain:
every test stops what it starts, and a leak fails the run (after removing it). The
product images its releases built are removed then too, also those of runs that the
`macrohard` processes tests started made in the session's temporary folders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest
from pathlib import Path
from llama_server import LlamaServer
from postgres_server import PostgresServer

from macrohard.config import SandboxSettings
from macrohard.errors import SandboxError
from macrohard.sandbox.docker import docker_client as connect
from macrohard.sandbox.image import build_image, image_exists, one_line
from macrohard.sandbox.lifecycle import OWNER_LABEL, owner_id


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker.DockerClient]:
    """A client for the local engine; skips only when no engine answers."""
    try:
        client = connect()
    except SandboxError as e:
        # The cause alone: the SandboxError message already says "no Docker engine answers".
        pytest.skip(f"no Docker engine answers: {one_line(e.__cause__ or e)}")
    yield client
    mine = {"label": [f"{OWNER_LABEL}={owner_id()}"]}
    leaked = client.api.containers(all=True, filters=mine)
    for container in leaked:
        client.api.remove_container(container["Id"], force=True)
    # Product images the releases of this session built, in this process (labelled with their builder) or in
    # the `macrohard` processes tests started (labelled with a run whose folder is in this session's temp): gone too.
    runs = {path.parent.name for path in tmp_path_factory.getbasetemp().rglob("run.json")}
    built = client.api.images(filters={"label": ["macrohard.product-image=1"]})
    for image in built:
        labels = image.get("Labels") or {}
        if labels.get(OWNER_LABEL) == owner_id() or labels.get("macrohard.run") in runs:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_image(image["Id"], force=True)
    client.close()
    assert not leaked, f"tests left {len(leaked)} sandbox containers behind: {[c['Labels'] for c in leaked]}"


@pytest.fixture(scope="session")
def sandbox_image(docker_client: docker.DockerClient) -> str:
    """The default sandbox image tag, built first if this engine lacks it."""
    tag = SandboxSettings().image
    if not image_exists(docker_client, tag):
        build_image(docker_client, tag)
    return tag


@pytest.fixture(scope="session")
def demo_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the bundled demo on the local fake sandbox, shared by tests that only read it."""
    from fakes import LocalSandboxProvider

    from macrohard._resources import resource_dir
    from macrohard.company.run import CompanyRun
    from macrohard.config import Settings

    demo = resource_dir("demo")
    settings = Settings(workspaces=tmp_path_factory.mktemp("demo") / "ws", roles_dir=resource_dir("roles"))
    run = CompanyRun.create(demo / "spec.md", settings, script=demo / "script.yaml")
    assert run.execute(LocalSandboxProvider()).status == "done"
    return run.paths.run_dir


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M (tests marked llama).

    Skips only when llama_cpp is not installed (the `llama` extra, which .ci/run installs).
    """
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (the `llama` extra)")
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL server from Debian's package, on a Unix socket (tests marked postgres).

    Skips only when psycopg or langgraph-checkpoint-postgres (the `postgres` extra) or the server is not installed.
    """
    pytest.importorskip("psycopg", reason="psycopg is not installed (the `postgres` extra)")
    pytest.importorskip("langgraph.checkpoint.postgres", reason="langgraph-checkpoint-postgres is not installed (the `postgres` extra)")
    try:
        server = PostgresServer().start()
    except RuntimeError as e:
        if "not installed" in str(e):
            pytest.skip(str(e))
        raise
    yield server.url
    server.stop()
