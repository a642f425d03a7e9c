"""The product's Dockerfile: a role's, checked against a safe subset, or the stack's default.

A Dockerfile a role wrote is code the agents wrote, and a build runs on the Docker engine,
outside any sandbox. So only instructions that arrange files and metadata are allowed:
COPY (from the build context only), WORKDIR, ENV, USER (never root), EXPOSE, CMD,
ENTRYPOINT, LABEL (never a `macrohard.` one, which the orchestrator sets), HEALTHCHECK and
STOPSIGNAL. Nothing runs during the build (no RUN, no ONBUILD, no SHELL), nothing is
fetched (no ADD, no other stage or image: its FROM is replaced by the base image), and
no parser directive (`# syntax=`, `# escape=`) changes how the file is read.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Iterable

from pydantic import BaseModel

MAX_BYTES = 64 * 1024
APP_DIR = "/app"  # where the default image puts the product, and its working directory
PRODUCT_USER = "65534:65534"  # nobody: what an image runs as when its Dockerfile names no user
ALLOWED = {"COPY", "WORKDIR", "ENV", "USER", "EXPOSE", "CMD", "ENTRYPOINT", "LABEL", "HEALTHCHECK", "STOPSIGNAL"}
WHY_NOT = {
    "RUN": "it runs a command during the build, on the Docker engine, outside any sandbox",
    "ADD": "it can fetch URLs and unpack archives; use COPY",
    "ONBUILD": "it runs instructions in later builds",
    "SHELL": "the build runs no shell command",
    "ARG": "the build takes no arguments",
    "VOLUME": "a volume outlives the container that made it",
    "MAINTAINER": "it is deprecated; use LABEL",
}
COPY_FLAGS = ("--chown=",)
_DIRECTIVE = re.compile(r"#\s*(syntax|escape|check)\s*=", re.IGNORECASE)
_ODD_SPACE = re.compile(r"[^\S \t\r\n]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"[+-]?[0-9]+")


def is_root(user: str) -> bool:
    """Whether a USER value (`name`, `uid`, `name:group`, `uid:gid`) is root or its group, as the runtime reads
    it: `00`, `+0` and `-0` are uid 0 too (it reads digits as a number), `ROOT` is not the user root but is refused."""
    parts = [p.strip() for p in user.strip().split(":")]
    return any(p.lower() == "root" or (_NUMBER.fullmatch(p) is not None and int(p) == 0) for p in parts)


class DockerfileRefused(Exception):
    """A Dockerfile outside the safe subset; `problems` says what, line by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Dockerfile(BaseModel):
    """What the orchestrator builds: the rendered text (on the base image) and where it came from."""

    text: str
    source: str  # "Dockerfile" (a role's, checked) or "default" (the stack's)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) of each instruction, continuations joined and comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # a comment, even inside a continuation, is dropped (as Docker does)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        word, _, rest = joined.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    if pending:
        joined = " ".join(p for p in pending if p)
        word, _, rest = joined.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def packages(base: str, deps: str, stack: str = "python") -> str:
    """The image of a product's third-party packages, on the stack's image: a product's image is built on it."""
    lines = [f"FROM {base}", f"COPY . {deps}/"]
    if stack == "python":
        lines.append(f"ENV PYTHONPATH={deps}")
    return "\n".join(lines) + "\n"


def check(text: str, base: str, own: Iterable[str] = ()) -> Dockerfile:
    """A role's Dockerfile rendered on `base`, or DockerfileRefused saying every problem.

    `own` are the files its author wrote itself (the deployer's release notes...): the image
    holds the product as it was tested, so none of them may be copied in under another
    name (as a module or a program that would stand in for the product's).
    """
    own = list(own)
    if len(text.encode()) > MAX_BYTES:
        raise DockerfileRefused([f"the Dockerfile is larger than {MAX_BYTES // 1024} KiB"])
    problems = [f"line {n}: parser directive `{line.strip()}`: the file is read as written, with no directive"
                for n, line in enumerate(text.splitlines(), 1) if _DIRECTIVE.match(line.strip())]
    # Characters that one reader takes for a space and another not (the engine splits on Unicode
    # spaces, shlex and our own parsers on ASCII ones): a label or a variable could hide in them.
    problems += [f"line {n}: holds a control or non-ASCII space character ({ord(odd[0]):#x}); write plain spaces"
                 for n, line in enumerate(text.splitlines(), 1) if (odd := _ODD_SPACE.findall(line))]
    kept: list[str] = []
    has_user = False
    parsed = instructions(text)
    froms = [(n, args) for n, word, args in parsed if word == "FROM"]
    if len(froms) > 1:
        problems.append(f"line {froms[1][0]}: a second FROM: one stage only, built on the sandbox image")
    for index, (number, word, args) in enumerate(parsed):
        if word == "FROM":
            if index != 0:
                problems.append(f"line {number}: FROM must come first (it is replaced by the sandbox image)")
            continue
        problem = _problem(word, args) or (_renames_own(args, own) if word == "COPY" else None)
        if problem:
            problems.append(f"line {number}: {word}: {problem}")
            continue
        has_user = has_user or word == "USER"
        kept.append(f"{word} {args}")
    if not any(word != "FROM" for _, word, _ in parsed):
        problems.append("the Dockerfile has no instruction besides FROM: COPY the product in, at least")
    if problems:
        raise DockerfileRefused(problems)
    lines = [f"FROM {base}", *kept]
    if not has_user:
        lines.append(f"USER {PRODUCT_USER}")
    rendered = "\n".join(lines) + "\n"
    # What is built must read back as exactly these instructions: nothing of one may run into the next
    # (a line that ends in a backslash would take the USER or LABEL line after it).
    if [(w, a) for _, w, a in instructions(rendered)] != [tuple(line.split(" ", 1)) for line in lines]:
        raise DockerfileRefused(["the Dockerfile does not read back as the instructions checked; "
                                 "write one instruction per line, with no backslash at the end of an instruction"])
    return Dockerfile(text=rendered, source="Dockerfile")


def _problem(word: str, args: str) -> str | None:
    if word in WHY_NOT:
        return f"not allowed: {WHY_NOT[word]}"
    if word not in ALLOWED:
        return f"unknown or not allowed (allowed: FROM, {', '.join(sorted(ALLOWED))})"
    if not args:
        return "needs arguments"
    if args.endswith("\\"):
        return "ends in a backslash, which would join the next instruction to it"
    if "<<" in args and word == "COPY":
        return "heredocs are not allowed"
    if word == "COPY":
        flags = [a for a in args.split() if a.startswith("--")]
        bad = [f for f in flags if not f.startswith(COPY_FLAGS)]
        if bad:
            return f"the flag {bad[0].split('=')[0]} is not allowed (only --chown; copy from the build context)"
    if word == "USER":
        if "$" in args:
            return "names a variable; name the user or uid itself"
        if is_root(args):
            return "the product does not run as root (user or group); use a uid such as 65534"
    if word == "LABEL":
        try:
            keys = [token.split("=", 1)[0] for token in shlex.split(args)]
        except ValueError as e:
            return f"cannot be read: {e}"
        if any(k.lower().startswith("macrohard") for k in keys):
            return "labels starting with `macrohard` are the orchestrator's"
    return None


def _renames_own(args: str, own: list[str]) -> str | None:
    """Why this COPY may put one of the author's own files in the image under another name, if it may."""
    words = [w for w in _copy_words(args) if not w.startswith("--")]
    if len(words) != 2 or words[1].endswith("/"):
        return None  # several sources, or into a folder: every file keeps its name
    source = posixpath.normpath("/" + words[0]).lstrip("/") or "."  # as the engine reads it: inside the context
    hit = next((path for path in own if source != "." and fnmatch.fnmatchcase(path, source)), None)
    if hit is None:
        return None
    return (f"copies {hit} (a file you wrote) to another name: the image holds the product as it was tested; "
            "copy it into a folder (a destination ending in /) if it belongs in the image")


def _copy_words(args: str) -> list[str]:
    if args.lstrip().startswith("["):
        try:
            value = json.loads(args)
        except ValueError:
            return args.split()
        return [str(v) for v in value] if isinstance(value, list) else args.split()
    return args.split()


def default(base: str, command: str, port: int | None = None, *, stack: str = "python",
            deps: str | None = None) -> Dockerfile:
    """The stack's image: the product in /app, run as nobody; a Python product importable from
    anywhere, with its packages (already in `base`, at `deps`) after it on the path.

    The product's files come last: each step before them depends only on the base image
    and the run spec, so the engine's build cache has them from an earlier build.
    """
    lines = [f"FROM {base}", f"WORKDIR {APP_DIR}"]
    if stack == "python":
        path = f"{APP_DIR}:{deps}" if deps else APP_DIR
        lines.append(f"ENV PYTHONPATH={path} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1")
    lines.append(f"USER {PRODUCT_USER}")
    if port is not None:
        lines.append(f"EXPOSE {port}")
    if command:
        lines.append(f"CMD {json.dumps(['sh', '-c', command])}")
    lines.append(f"COPY . {APP_DIR}")
    return Dockerfile(text="\n".join(lines) + "\n", source="default")
