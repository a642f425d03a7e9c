"""Build the sandbox image, with or without a registry.

With a registry, the image is docker/Dockerfile on top of `debian:bookworm-slim`.
Without one, a Debian root file system is bootstrapped from Debian's package
mirror (mmdebstrap, else debootstrap), imported as `macrohard-base:bookworm`, and
the same Dockerfile builds on top of it without touching the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from macrohard._resources import resource_dir
from macrohard.errors import SandboxError
from macrohard.stacks import Stack

REGISTRY_BASE = "debian:bookworm-slim"
OFFLINE_BASE = "macrohard-base:bookworm"
SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The host's apt sources are the best mirror choice (proxies, local mirrors), but
# only when they describe the same Debian release as the one we bootstrap.
HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
# An imported tarball carries no image config, so give it what a Debian image has.
BASE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
]
# Documentation and translations are dead weight in a sandbox.
DPKG_EXCLUDES = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
]
BOOTSTRAP_HINT = (
    "install mmdebstrap (`apt-get install mmdebstrap`) or make a Docker registry reachable"
)

Progress = Callable[[str], None]
DockerFailure = (DockerException, requests.RequestException)


def _silent(line: str) -> None:
    """Default progress sink: drop the line."""


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    """True when the engine has an image called `tag`."""
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    except DockerFailure as e:
        raise _engine_error(f"cannot look up image {tag}", e) from e
    return True


def build_image(client: docker.DockerClient, tag: str, *, on_progress: Progress = _silent) -> str:
    """Build the sandbox image as `tag` and return its id."""
    context = resource_dir("docker")
    if not (context / "Dockerfile").is_file():
        raise SandboxError(
            f"no Dockerfile in {context}", "reinstall macrohard or restore the docker/ folder"
        )
    base = ensure_base(client, read_packages(context / "packages.txt"), on_progress)
    return _docker_build(client, context, tag, base, on_progress)


STACK_FILES_LABEL = "macrohard.stack-files"  # what a stack image was built from: rebuilt when that changes


def stack_files_digest(stack: Stack) -> str:
    """sha256 of a stack image's inputs: its Debian packages and the files it copies in (the reporter)."""
    digest = hashlib.sha256(" ".join(stack.packages).encode())
    folder = resource_dir("docker") / "stacks" / stack.name
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            digest.update(f"\0{path.relative_to(folder)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def stack_image_current(client: docker.DockerClient, stack: Stack) -> bool:
    """True when the engine has the stack's image, built from the files this version of macrohard has."""
    try:
        labels = client.images.get(stack.image).labels or {}
    except ImageNotFound:
        return False
    except DockerFailure as e:
        raise _engine_error(f"cannot look up image {stack.image}", e) from e
    return labels.get(STACK_FILES_LABEL) == stack_files_digest(stack)


def build_stack_image(client: docker.DockerClient, stack: Stack, base: str, *, on_progress: Progress = _silent) -> str:
    """Build a stack's sandbox image on the base sandbox image: its Debian packages (from Debian's
    mirror, as the base's own build does when a package is missing) and its files; its id."""
    if not image_exists(client, base):
        build_image(client, base, on_progress=on_progress)
    stack_dir = resource_dir("docker") / "stacks" / stack.name
    with tempfile.TemporaryDirectory(prefix=f"macrohard-{stack.name}-image-") as tmp:
        context = Path(tmp)
        lines = [
            "ARG BASE", "FROM ${BASE}", "USER root",
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            f"{' '.join(stack.packages)} && apt-get clean && rm -rf /var/lib/apt/lists/*",
        ]
        if stack_dir.is_dir():
            shutil.copytree(stack_dir, context / "files")
            lines.append("COPY files/ /usr/local/lib/macrohard/")
        lines += ["WORKDIR /workspace", f'LABEL org.opencontainers.image.title="macrohard-sandbox-{stack.name}" '
                  f'{STACK_FILES_LABEL}="{stack_files_digest(stack)}"', 'CMD ["sleep", "infinity"]']
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        return _docker_build(client, context, stack.image, base, on_progress)


def read_packages(path: Path) -> list[str]:
    """The package names in packages.txt, comments and blank lines dropped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise SandboxError(
            f"cannot read {path}: {e.strerror}", "restore docker/packages.txt"
        ) from e
    return [name for line in lines if (name := line.split("#", 1)[0].strip())]


def ensure_base(client: docker.DockerClient, packages: list[str], on_progress: Progress) -> str:
    """Name a base image that exists locally, pulling or bootstrapping one if needed."""
    for name in (REGISTRY_BASE, OFFLINE_BASE):
        if image_exists(client, name):
            on_progress(f"base image: {name}")
            return name
    if _try_pull(client, REGISTRY_BASE, on_progress):
        return REGISTRY_BASE
    on_progress(f"no registry: bootstrapping {OFFLINE_BASE} from Debian packages")
    bootstrap_base(client, packages, on_progress)
    return OFFLINE_BASE


def bootstrap_base(client: docker.DockerClient, packages: list[str], on_progress: Progress) -> str:
    """Build a Debian root file system tarball and import it as OFFLINE_BASE; return its id."""
    with tempfile.TemporaryDirectory(prefix="macrohard-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        if shutil.which("mmdebstrap"):
            _run(_mmdebstrap_command(packages, tarball), on_progress)
        elif shutil.which("debootstrap"):
            _debootstrap_tarball(packages, Path(tmp) / "rootfs", tarball, on_progress)
        else:
            raise SandboxError(
                "no registry answers and neither mmdebstrap nor debootstrap is installed",
                BOOTSTRAP_HINT,
            )
        on_progress(f"importing {tarball.stat().st_size // 2**20} MiB as {OFFLINE_BASE}")
        return _import(client, tarball)


def _try_pull(client: docker.DockerClient, name: str, on_progress: Progress) -> bool:
    repository, tag = name.rsplit(":", 1)
    on_progress(f"pulling {name}")
    try:
        client.images.pull(repository, tag=tag)
    except DockerFailure as e:
        on_progress(f"cannot pull {name}: {one_line(e)}")
        return False
    return True


def _mirror_argument() -> str:
    """The host's apt sources file if the host runs the same release, else Debian's mirror."""
    if f"VERSION_CODENAME={SUITE}" in _read_or_empty(Path("/etc/os-release")):
        for path in HOST_SOURCES:
            if SUITE in _read_or_empty(path):
                return str(path)
    return DEBIAN_MIRROR


def _mmdebstrap_command(packages: list[str], tarball: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES),
        "--format=tar",
        SUITE,
        str(tarball),
        _mirror_argument(),
    ]


def _debootstrap_tarball(
    packages: list[str], root: Path, tarball: Path, on_progress: Progress
) -> None:
    # debootstrap takes a mirror URL, not a sources file, and writes a directory.
    if os.geteuid() != 0:
        raise SandboxError("debootstrap needs root to bootstrap the base image", BOOTSTRAP_HINT)
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            str(root),
            DEBIAN_MIRROR,
        ],
        on_progress,
    )
    # Unlike mmdebstrap, debootstrap leaves the downloaded packages behind.
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / cache).glob("*"):
            if path.is_file() and path.name != "lock":
                path.unlink()
    _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."], on_progress)


def _run(command: list[str], on_progress: Progress) -> None:
    """Run a bootstrap tool, streaming its output; fail with its last lines."""
    last: deque[str] = deque(maxlen=5)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as e:
        raise SandboxError(f"cannot run {command[0]}: {e.strerror}", BOOTSTRAP_HINT) from e
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                last.append(line)
                on_progress(line)
    if proc.returncode != 0:
        tail = " | ".join(last) or "no output"
        raise SandboxError(
            f"{command[0]} failed with exit code {proc.returncode}: {tail}",
            "check that Debian's mirror is reachable and that you are root or can unshare",
        )


def _import(client: docker.DockerClient, tarball: Path) -> str:
    repository, tag = OFFLINE_BASE.rsplit(":", 1)
    try:
        answer = client.api.import_image(
            src=str(tarball), repository=repository, tag=tag, changes=BASE_CHANGES
        )
        # The engine reports some failures inside a 200 answer.
        if '"error"' in str(answer):
            raise SandboxError(
                f"importing {OFFLINE_BASE} failed: {one_line(answer)}",
                "check that the Docker engine has disk space",
            )
        return str(client.images.get(OFFLINE_BASE).id)
    except DockerFailure as e:
        raise _engine_error(f"cannot import the bootstrapped base as {OFFLINE_BASE}", e) from e


def _docker_build(
    client: docker.DockerClient, context: Path, tag: str, base: str, on_progress: Progress
) -> str:
    on_progress(f"building {tag} on {base}")
    try:
        chunks: Iterable[dict[str, Any]] = client.api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE": base},
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in chunks:
            if "error" in chunk:
                raise SandboxError(
                    f"building {tag} failed: {one_line(chunk['error'])}",
                    f"check {context / 'Dockerfile'} and {context / 'packages.txt'}",
                )
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    on_progress(line.rstrip())
        return str(client.images.get(tag).id)
    except DockerFailure as e:
        raise _engine_error(f"cannot build {tag}", e) from e


def _engine_error(what: str, e: BaseException) -> SandboxError:
    return SandboxError(
        f"{what}: {one_line(e)}", "check that the Docker engine is running and has disk space"
    )


def one_line(value: object, limit: int = 300) -> str:
    """An error message squeezed onto one line of bounded length."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
