"""The sandbox protocol: somewhere to run generated code that is not the host."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from macrohard.models import RunSpec
from macrohard.stacks import Stack


class ExecResult(BaseModel):
    command: str
    exit_code: int
    duration_s: float
    # Combined stdout and stderr, capped: the head and the tail are kept.
    output: str
    output_bytes: int  # the true size before capping
    truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False

    def tail(self, chars: int = 2000) -> str:
        return self.output[-chars:]


class Sandbox(Protocol):
    """One running container with a host directory mounted at /workspace."""

    # Where the provider's output_dir is seen from inside ("" without one).
    output_path: str

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult: ...

    def warm(self, command: str) -> None:
        """Start `command` ahead, so exec(command) finds its start-up done.

        The command must read one line of standard input before it looks at the
        workspace: it is held there until exec() releases it. Warmed twice, two wait,
        for two execs of it. Any other exec ends them.
        """
        ...

    def idle(self) -> bool:
        """Whether no process of its own is left: nothing in it can change a file until exec().

        When it is idle, host git may read its files without pausing it.
        """
        ...

    def end_processes(self, *, keep_warm: bool = False) -> None:
        """End whatever its commands left running: it is set aside, to be removed later;
        `keep_warm`: but for warm commands still waiting (it runs again)."""
        ...

    def pause(self) -> None:
        """Freeze every process in the sandbox: host git is about to read its files."""
        ...

    def unpause(self) -> None: ...

    def stop(self) -> None: ...


class ProductImage(BaseModel):
    """A product image on the engine."""

    id: str
    tags: list[str] = []
    labels: dict[str, str] = {}
    created: str = ""  # as the engine says it (RFC 3339)


class ImageBuild(BaseModel):
    """How building a product image went: its id, or why not; the log's tail either way."""

    image_id: str | None = None
    error: str | None = None  # why the build failed, in one line
    log: str = ""  # the build's output, its tail kept
    log_bytes: int = 0  # the log's true size
    duration_s: float = 0.0


class SmokeResult(BaseModel):
    """A product image's smoke check: the command (or a service's health probe) and how it ended."""

    passed: bool
    exit_code: int | None = None  # the command's, or the probe's for a service
    timed_out: bool = False
    output: str = ""  # the output's tail: the command's, or the service's and the probe's
    reason: str = ""  # why it did not pass, in one sentence
    health_url: str | None = None
    duration_s: float = 0.0


class ProductImages(Protocol):
    """Building product images offline, running their smoke checks hardened, finding and removing them.

    The Docker adapter is sandbox/product.py; the unit tests' fake runs the smoke
    command as a local process. Images carry labels (deploy/product.py) by which they are
    found again, listed and removed.
    """

    def find(self, labels: dict[str, str]) -> list[ProductImage]:
        """The product images carrying all these labels, newest first."""
        ...

    def build(self, context: Path, dockerfile: str, *, tag: str, labels: dict[str, str]) -> ImageBuild:
        """Build `dockerfile` (checked already) on the files of `context` (its .dockerignore applied), offline."""
        ...

    def tag(self, image_id: str, tag: str) -> None:
        """Point name:tag at this image (a resumed run finds its image, whose tag another may have taken)."""
        ...

    def smoke(self, image_id: str, run: RunSpec, *, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        """Run the image's smoke check hardened; containers (and a service's network) are removed after."""
        ...

    def remove(self, labels: dict[str, str]) -> list[ProductImage]:
        """Remove the product images carrying these labels; return those removed."""
        ...


class Extras(BaseModel):
    """What a sandbox gets beside its workspace: its stack's image, packages, cache and variables."""

    image: str | None = None  # None: the configured sandbox image
    deps: Path | None = None  # third-party packages the orchestrator installed: read-only at /deps
    cache: Path | None = None  # a folder kept across a ticket's attempts: read-write at /cache
    env: dict[str, str] = {}


class SandboxProvider(Protocol):
    def start(
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None,
        extras: Extras | None = None,
    ) -> Sandbox:
        """A sandbox on workdir (read-only if asked), with output_dir writable at its output_path."""
        ...

    def ensure_image(self, stack: Stack) -> str:
        """The sandbox image for a stack, built first (from Debian's packages) if it is missing."""
        ...

    def prune(self, labels: dict[str, str] | None = None) -> int:
        """Remove leftover sandboxes carrying these labels (all of ours when None)."""
        ...

    def prune_orphans(self, labels: dict[str, str] | None = None) -> int:
        """Remove the sandboxes whose owning process has died (a crashed run's), never a live one's."""
        ...

    def product_images(self) -> ProductImages:
        """Where the release builds and checks the product's image: the same engine and base image."""
        ...
