"""Product images made by appending one layer to the base image (part of the Docker adapter).

A commit (commit_image.py) still costs seconds on an overlay file system over FUSE: the
engine's naive diff walks the whole root file system to find the few files that changed.
But the change is known before any container exists: it is COPY's tar. So, as crane
append, ko and jib do, the image is written rather than committed: the layer is that tar,
its diff id its sha256; the config is the base image's with the Dockerfile's metadata
applied as the builder applies it and the diff id appended; and the engine loads an
archive holding the config and that one layer (its classic store finds the base's layers
by chain id without reading them). A tenth of a second instead of two.

Only a literal subset of metadata is applied here: nothing with `$` or a backslash (no
variable to substitute, no escape to read), no quote but a plain `key="value"`. Any other
plan is committed, as is every plan once an engine refuses the archive (the containerd
image store wants every layer; an old engine may not load) or loads something else.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import docker
from pydantic import BaseModel

from macrohard.deploy.dockerfile import instructions
from macrohard.sandbox.base import ImageBuild
from macrohard.sandbox.commit_image import CommitPlan, _tar, commit_plan
from macrohard.sandbox.image import DockerFailure, one_line

_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n\t]")
_PAIR = r'[A-Za-z0-9_][A-Za-z0-9_.\-/]*=(?:"[^"]*"|[^\s"\']*)'
_PAIRS = re.compile(rf"{_PAIR}(?:[ \t]+{_PAIR})*")
_PORT = re.compile(r"([1-9][0-9]{0,4})(/(?:tcp|udp|sctp))?")
_PLAIN = re.compile(r"[^\s\"']+")
_refused: str | None = None  # why this process's engine would not load an appended layer, once it would not


class Setting(BaseModel):
    """One metadata instruction, read: what the builder would set."""

    word: str
    pairs: list[tuple[str, str]] = []  # ENV, LABEL
    text: str = ""  # WORKDIR, USER; CMD and ENTRYPOINT's shell form
    words: list[str] | None = None  # EXPOSE's ports ("8000/tcp"); CMD and ENTRYPOINT's exec form


class AppendPlan(CommitPlan):
    settings: list[Setting]


class LoadRefused(Exception):
    """The engine did not load the appended layer as written: commit instead (the message says why)."""


def append_plan(dockerfile: str) -> AppendPlan | None:
    """commit_plan's plan, its metadata read; None when any of it is beyond the literal subset."""
    plan = commit_plan(dockerfile)
    # Printable ASCII only: the engine takes any Unicode space for a separator, this reader does not.
    if plan is None or "$" in dockerfile or "\\" in dockerfile or _NOT_PLAIN.search(dockerfile):
        return None
    settings = [_setting(word, args) for _, word, args in instructions(dockerfile)[1:] if word != "COPY"]
    if any(s is None for s in settings):
        return None
    return AppendPlan(**plan.model_dump(), settings=[s for s in settings if s is not None])


def _setting(word: str, args: str) -> Setting | None:
    if word in ("ENV", "LABEL"):
        if args and "=" not in args.split()[0]:  # the legacy `ENV key value`: the value is the rest of the line
            key, _, value = args.partition(" ")
            plain = _PLAIN.fullmatch(key) and value.strip() and not set("\"'\t") & set(args)
            return Setting(word=word, pairs=[(key, value.strip())]) if plain else None
        if not _PAIRS.fullmatch(args):
            return None
        pairs = [pair.split("=", 1) for pair in re.findall(_PAIR, args)]
        return Setting(word=word, pairs=[(k, v[1:-1] if v.startswith('"') else v) for k, v in pairs])
    if word in ("WORKDIR", "USER"):
        ok = _PLAIN.fullmatch(args) and (word == "USER" or args.startswith("/"))
        return Setting(word=word, text=args) if ok else None
    if word == "EXPOSE":
        ports = [_PORT.fullmatch(p) for p in args.split()]
        if not ports or not all(m and int(m[1]) <= 65535 for m in ports):
            return None
        return Setting(word=word, words=[f"{m[1]}{m[2] or '/tcp'}" for m in ports if m])
    if word in ("CMD", "ENTRYPOINT") and args and not args.startswith("--"):
        if not args.startswith("["):
            return Setting(word=word, text=args)
        try:
            command = json.loads(args)
        except ValueError:
            return None  # the builder would read it as a shell command: ambiguous, so committed
        ok = isinstance(command, list) and command and all(isinstance(c, str) for c in command)
        return Setting(word=word, words=command) if ok else None
    return None


def apply(config: dict[str, Any], settings: list[Setting]) -> dict[str, Any]:
    """A copy of an image's Config with `settings` applied, as the builder's dispatchers apply them."""
    out = copy.deepcopy(config)
    cmd_set = False  # a CMD of this Dockerfile: an ENTRYPOINT after it keeps it, else clears the base's
    for s in settings:
        if s.word == "ENV":
            env = list(out.get("Env") or [])
            for key, value in s.pairs:
                at = next((i for i, e in enumerate(env) if e.split("=", 1)[0] == key), None)
                if at is None:
                    env.append(f"{key}={value}")
                else:
                    env[at] = f"{key}={value}"  # the builder replaces a variable in place
            out["Env"] = env
        elif s.word == "LABEL":
            out["Labels"] = {**(out.get("Labels") or {}), **dict(s.pairs)}
        elif s.word == "WORKDIR":
            out["WorkingDir"] = s.text
        elif s.word == "USER":
            out["User"] = s.text
        elif s.word == "EXPOSE":
            out["ExposedPorts"] = {**(out.get("ExposedPorts") or {}), **{p: {} for p in s.words or []}}
        else:
            command = s.words if s.words is not None else [*(out.get("Shell") or ["/bin/sh", "-c"]), s.text]
            if s.word == "CMD":
                out["Cmd"], cmd_set = command, True
            else:
                out["Entrypoint"] = command
                if not cmd_set:
                    out["Cmd"] = None
    return out


def append_build(client: docker.DockerClient, plan: AppendPlan, context: Path, files: list[str], tag: str) -> ImageBuild:
    """The image of `plan` as one layer appended to its base; LoadRefused when the engine will not have it so."""
    global _refused
    if _refused is not None:
        raise LoadRefused(f"{_refused} (earlier in this process)")
    started = time.monotonic()
    try:
        base = client.api.inspect_image(plan.base)
        history = client.api.history(plan.base)
    except DockerFailure as e:
        raise LoadRefused(f"cannot read the base image {plan.base}: {one_line(e)}") from e  # the commit says it again
    layer = _tar(context, files, plan.dest)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    layers = [*base["RootFS"]["Layers"], diff_id]
    raw = json.dumps(_config(base, history, plan, diff_id), separators=(",", ":")).encode()
    image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        answers = list(client.api.load_image(_archive(raw, image_id, layer, diff_id, tag, layers)))
        errors = [str(a["error"]) for a in answers if isinstance(a, dict) and a.get("error")]
        if errors:
            raise LoadRefused(one_line(errors[0]))
        got = client.api.inspect_image(tag)
        if got["Id"] != image_id or got["RootFS"]["Layers"] != layers:
            try:
                client.api.remove_image(tag)
            except DockerFailure:
                pass
            raise LoadRefused(f"it loaded {str(got['Id'])[7:19]}, not the image written ({image_id[7:19]})")
    except (*DockerFailure, LoadRefused) as e:
        _refused = f"the engine did not load an appended layer: {one_line(e)}"
        raise LoadRefused(_refused) from e
    log = (f"one layer on {plan.base}: {len(files)} files into {plan.dest}; " + "; ".join(plan.changes) + "\n"
           f"Successfully built {image_id[7:19]}\nSuccessfully tagged {tag}\n")
    return ImageBuild(image_id=image_id, log=log, log_bytes=len(log), duration_s=time.monotonic() - started)


def _config(base: dict[str, Any], history: list[dict[str, Any]], plan: AppendPlan, diff_id: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    config = {"architecture": base["Architecture"], "os": base["Os"], "created": now,
              "config": apply({**base["Config"], "Image": base["Id"]}, plan.settings),
              "rootfs": {"type": "layers", "diff_ids": [*base["RootFS"]["Layers"], diff_id]},
              "history": [*_base_history(base, history),
                          *({"created": now, "created_by": change, "empty_layer": True} for change in plan.changes),
                          {"created": now, "created_by": f"COPY . {plan.dest}",
                           "comment": f"macrohard: {plan.dest} from the release's commit"}]}
    if base.get("Variant"):
        config["variant"] = base["Variant"]
    return config


def _base_history(base: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The base's history as its config holds it (the API drops `empty_layer`: a metadata step is a
    zero-sized `#(nop)` but COPY/ADD); one entry a layer when that reading does not fit its layers."""
    def entry(h: dict[str, Any]) -> dict[str, Any]:
        created = datetime.fromtimestamp(int(h.get("Created") or 0), tz=timezone.utc).isoformat().replace("+00:00", "Z")
        by = str(h.get("CreatedBy") or "")
        empty = not h.get("Size") and "#(nop)" in by and not re.search(r"#\(nop\)\s+(COPY|ADD)\b", by)
        return {"created": created, "created_by": by, **({"comment": h["Comment"]} if h.get("Comment") else {}),
                **({"empty_layer": True} if empty else {})}

    entries = [entry(h) for h in reversed(history)]
    if sum(not e.get("empty_layer") for e in entries) == len(base["RootFS"]["Layers"]):
        return entries
    return [{"created_by": f"{base['Id'][:19]} layer {i + 1}"} for i in range(len(base["RootFS"]["Layers"]))]


def _archive(raw: bytes, image_id: str, layer: bytes, diff_id: str, tag: str, layers: list[str]) -> bytes:
    """A docker-archive (`docker save`'s format) holding the config and only the new layer's tar."""
    manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": [tag], "Layers": [f"{d[7:]}/layer.tar" for d in layers]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in ((f"{image_id[7:]}.json", raw), (f"{diff_id[7:]}/layer.tar", layer),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
