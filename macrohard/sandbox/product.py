"""Product images on the Docker engine (part of the Docker adapter): built offline, found and removed by label.

The build context is a tar this module makes of an exported tree (its .dockerignore
applied) plus the Dockerfile the orchestrator checked and rendered, under a name no
tree holds; the engine builds it with no network and pulls nothing. The smoke check is
in smoke.py.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import ImageNotFound, NotFound
from docker.utils.build import create_archive, exclude_paths

from macrohard.config import SandboxSettings
from macrohard.deploy.product import PRODUCT_LABEL
from macrohard.models import RunSpec
from macrohard.sandbox import lifecycle
from macrohard.sandbox.base import ImageBuild, ProductImage, SmokeResult
from macrohard.sandbox.commit_image import commit_build, commit_plan
from macrohard.sandbox.image import DockerFailure, one_line
from macrohard.sandbox.layer_image import LoadRefused, append_build, append_plan
from macrohard.sandbox.smoke import DockerSmoke, Tail, engine_error


class DockerProductImages:
    """ProductImages on the engine DOCKER_HOST names; the sandbox settings give the base image and limits."""

    def __init__(self, settings: SandboxSettings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from macrohard.sandbox.docker import docker_client

            self._client = docker_client()
        return self._client

    # -- images ----------------------------------------------------------------

    def find(self, labels: dict[str, str]) -> list[ProductImage]:
        wanted = {**labels, PRODUCT_LABEL: "1"}
        try:
            found = self.client.api.images(filters={"label": [f"{k}={v}" for k, v in wanted.items()]})
        except DockerFailure as e:
            raise engine_error("cannot list product images", e) from e
        images = [
            ProductImage(id=str(i["Id"]), tags=[t for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
                         labels=dict(i.get("Labels") or {}), created=_when(i.get("Created")))
            for i in found
        ]
        return sorted(images, key=lambda i: i.created, reverse=True)

    def build(self, context: Path, dockerfile: str, *, tag: str, labels: dict[str, str]) -> ImageBuild:
        started = time.monotonic()
        name = f".macrohard-dockerfile-{uuid.uuid4().hex}"  # no tree holds it: the checked file is the one built
        log = Tail(self.settings.output_limit_bytes)
        image_id: str | None = None
        error: str | None = None
        # One LABEL instruction: the engine's `labels` option makes a build step (a container) per label.
        every = {**labels, lifecycle.OWNER_LABEL: lifecycle.owner_id()}
        labelled = dockerfile.rstrip("\n") + "\nLABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(every.items()))
        plan = commit_plan(labelled)
        if plan is not None:  # metadata and one COPY: one layer, not a layer per step (see commit_image.py)
            files = _context_files(context, name)
            literal = append_plan(labelled)
            note = ""
            if literal is not None:  # and that metadata literal: the layer written and loaded, not committed
                try:
                    return append_build(self.client, literal, context, files, tag)
                except LoadRefused as e:
                    note = f"{e}: one commit instead\n"
            built = commit_build(self.client, plan, context, files, tag)
            return built.model_copy(update={"log": note + built.log, "log_bytes": len(note) + built.log_bytes})
        with tempfile.TemporaryFile() as tar:
            _context_tar(context, name, labelled + "\n", tar)
            try:
                chunks: Iterable[dict[str, Any]] = self.client.api.build(
                    fileobj=tar, custom_context=True, dockerfile=name, tag=tag,
                    network_mode="none", pull=False, rm=True, forcerm=True, decode=True,
                )
                for chunk in chunks:
                    if "error" in chunk:
                        error = one_line(chunk["error"])
                        log.add(f"{chunk['error']}\n")
                    log.add(str(chunk.get("stream") or ""))
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = str(aux["ID"])
            except DockerFailure as e:
                if not _is_build_error(e):
                    raise engine_error(f"cannot build {tag}", e) from e
                error = one_line(e)
                log.add(f"{e}\n")
        if error is None and image_id is None:
            error = "the engine reported no image"
        return ImageBuild(image_id=None if error else image_id, error=error, log=log.text(), log_bytes=log.total,
                          duration_s=time.monotonic() - started)

    def tag(self, image_id: str, tag: str) -> None:
        repository, _, version = tag.rpartition(":")
        try:
            self.client.api.tag(image_id, repository, version, force=True)
        except DockerFailure as e:
            raise engine_error(f"cannot tag {image_id[:19]} as {tag}", e) from e

    def remove(self, labels: dict[str, str]) -> list[ProductImage]:
        removed = []
        for image in self.find(labels):
            try:
                self.client.api.remove_image(image.id, force=True)
            except (NotFound, ImageNotFound):
                continue
            except DockerFailure as e:
                raise engine_error(f"cannot remove product image {image.id[:19]}", e) from e
            removed.append(image)
        return removed

    def smoke(self, image_id: str, run: RunSpec, *, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        return DockerSmoke(self.client, self.settings).run(image_id, run, labels=labels, timeout_s=timeout_s)


def _context_files(context: Path, name: str) -> list[str]:
    """context's files but those its .dockerignore names (and .dockerignore itself)."""
    return sorted(p for p in exclude_paths(str(context), _ignore_patterns(context), dockerfile=name)
                  if p != ".dockerignore")


def _context_tar(context: Path, name: str, dockerfile: str, tar: IO[bytes]) -> None:
    """The build context: context's files but those its .dockerignore names, and the Dockerfile as `name`."""
    create_archive(str(context), files=_context_files(context, name), fileobj=tar, extra_files=[(name, dockerfile)])


def _ignore_patterns(context: Path) -> list[str]:
    """.dockerignore's patterns, read without following a link (the tree is the agents')."""
    try:
        fd = os.open(context / ".dockerignore", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(256 * 1024).decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _is_build_error(e: BaseException) -> bool:
    """An answer about the Dockerfile or context (the deployer's to fix), not an engine out of reach."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    return isinstance(status, int) and 400 <= status < 500


def _when(created: object) -> str:
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="seconds")
    return str(created or "")
