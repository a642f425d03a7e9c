"""Product images made in one commit instead of a build (part of the Docker adapter).

The engine's classic builder commits a layer for every step it cannot take from its
cache: a product image's `COPY . /app` and the LABEL naming its commit are two, about
two seconds each on an overlay file system over FUSE, serial at the end of every
release. A Dockerfile that only sets metadata and copies the whole context into one
absolute folder (the stack's default, and the image of a product's packages) is
made instead as the builder would make it: a container created (never started) from
the base image, the context put into it as a tar owned by root, and one commit whose
changes are the Dockerfile's metadata. Anything else goes to the builder.

The commit is itself the slow part there (the engine's naive diff walks the whole root
file system), so when the metadata is literal the layer is appended instead, without a
container (layer_image.py); the commit is for the rest, and for an engine that will not
load an appended layer.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from pathlib import Path

import docker
from pydantic import BaseModel

from macrohard.deploy.dockerfile import instructions
from macrohard.sandbox.base import ImageBuild
from macrohard.sandbox.image import DockerFailure, one_line

# What `docker commit --change` takes, and all a plan may hold besides FROM and the one COPY.
METADATA = frozenset({"WORKDIR", "ENV", "USER", "EXPOSE", "CMD", "ENTRYPOINT", "LABEL"})


class CommitPlan(BaseModel):
    base: str
    dest: str  # the absolute folder the context goes to
    changes: list[str]  # the metadata instructions, in order


def commit_plan(dockerfile: str) -> CommitPlan | None:
    """The plan for a Dockerfile of FROM, metadata and one plain `COPY . /dir`; None for any other."""
    steps = instructions(dockerfile)
    if len(steps) < 2 or steps[0][1] != "FROM" or len(steps[0][2].split()) != 1:
        return None
    # One COPY; the rest only set metadata, which no COPY reads (it copies as root, to an absolute folder).
    copies = [i for i, (_, word, _) in enumerate(steps) if word == "COPY"]
    if len(copies) != 1:
        return None
    copy_args = steps[copies[0]][2].split()
    if len(copy_args) != 2 or copy_args[0] != "." or not copy_args[1].startswith("/") or "$" in copy_args[1]:
        return None
    middle = [s for i, s in enumerate(steps[1:], 1) if i != copies[0]]
    if any(word not in METADATA for _, word, _ in middle):
        return None
    dest = copy_args[1].rstrip("/") or "/"
    return CommitPlan(base=steps[0][2], dest=dest, changes=[f"{word} {args}" for _, word, args in middle])


def commit_build(client: docker.DockerClient, plan: CommitPlan, context: Path, files: list[str], tag: str) -> ImageBuild:
    """The image of `plan`: `files` (paths relative to `context`) under plan.dest, in one layer."""
    started = time.monotonic()
    data = _tar(context, files, plan.dest)
    log = f"one commit on {plan.base}: {len(files)} files into {plan.dest}; " + "; ".join(plan.changes) + "\n"
    container = None
    try:
        container = client.api.create_container(plan.base, name=f"macrohard-image-{uuid.uuid4().hex[:12]}",
                                                network_disabled=True)
        if not client.api.put_archive(container["Id"], "/", data):
            raise RuntimeError("the engine did not take the product's files")
        repository, _, version = tag.rpartition(":")
        image = client.api.commit(container["Id"], repository=repository, tag=version, changes=plan.changes,
                                  message=f"macrohard: {plan.dest} from the release's commit")
        image_id = str(image["Id"])
        log += f"Successfully built {image_id[7:19]}\nSuccessfully tagged {tag}\n"
        return ImageBuild(image_id=image_id, log=log, log_bytes=len(log), duration_s=time.monotonic() - started)
    except (DockerFailure, RuntimeError) as e:
        error = one_line(e)
        return ImageBuild(error=error, log=log + error + "\n", log_bytes=len(log), duration_s=time.monotonic() - started)
    finally:
        if container is not None:
            try:
                client.api.remove_container(container["Id"], force=True)
            except DockerFailure:
                pass


def _tar(context: Path, files: list[str], dest: str) -> bytes:
    """COPY's result as a tar: the folders leading to dest and every file, owned by root, modes kept, links as links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = dest.strip("/")
        parts = root.split("/") if root else []
        added: set[str] = set()

        def folder(name: str, mode: int = 0o755) -> None:
            if name and name not in added:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
                tar.addfile(info)
                added.add(name)

        for i in range(1, len(parts) + 1):
            folder("/".join(parts[:i]))
        for rel in sorted(files):
            path = context / rel
            pieces = rel.split("/")
            for i in range(1, len(pieces)):
                folder("/".join([*parts, *pieces[:i]]))
            info = tar.gettarinfo(str(path), arcname="/".join([*parts, *pieces]))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isdir():
                folder(info.name, info.mode)
            elif info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif info.issym():
                tar.addfile(info)
            # Sockets, FIFOs and devices are not in an exported tree; were one there, COPY would refuse it.
    return out.getvalue()
