"""Release versions from a repository's tags: `vX.Y.Z`, the next one, and what changed since the last.

A function of the repository, not of the run: a run that goes on from an earlier one's
repository (`macrohard run SPEC --from RUN`) finds its tags and releases the next version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from pydantic import BaseModel

FIRST = "v0.1.0"
MAX_CHANGES = 40  # commit subjects handed to the deployer: its prompt stays bounded
_TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


class GitQuery(Protocol):
    """What is read of the repository (GitWorkspace has it): a read-only git command's (status, output)."""

    def query(self, *args: str) -> tuple[int, str]: ...


class ReleaseBase(BaseModel):
    """Where a release starts from: its version, the release before it, and the commits since."""

    version: str
    previous: str | None = None
    changes: list[str] = []  # subjects of the commits since `previous` (all of them without one), newest first
    more_changes: int = 0  # how many more there were than MAX_CHANGES


def parse(tag: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release tag `vX.Y.Z`; None for any other name."""
    found = _TAG.fullmatch(tag.strip())
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def latest(tags: Iterable[str]) -> str | None:
    """The highest release tag among these, or None without one."""
    versions = [(v, t.strip()) for t in tags if (v := parse(t)) is not None]
    return max(versions)[1] if versions else None


def next_version(tags: Iterable[str]) -> str:
    """v0.1.0 for a repository without release tags; else the highest one with its minor bumped."""
    top = latest(tags)
    if top is None:
        return FIRST
    major, minor, _ = parse(top)  # type: ignore[misc]
    return f"v{major}.{minor + 1}.0"


def release_base(repo: GitQuery, ref: str, version: str | None = None) -> ReleaseBase:
    """The next version of this repository (or `version`, once chosen), and what changed on ref since
    the last release before it.

    The version is above every release tag in the repository (so no two releases share
    one); the previous release is the highest release tag below it that ref contains.
    A run that already made its tag and goes on (a resume) names the same one as before.
    """
    version = version or next_version(_lines(repo.query("tag", "--list", "v*")))
    below = parse(version)
    merged = _lines(repo.query("tag", "--list", "--merged", ref, "v*"))
    previous = latest(t for t in merged if below is None or (parse(t) or below) < below)
    span = f"{previous}..{ref}" if previous else ref
    subjects = _lines(repo.query("log", "--format=%s", "--first-parent", span, "--"))
    return ReleaseBase(version=version, previous=previous, changes=subjects[:MAX_CHANGES],
                       more_changes=max(0, len(subjects) - MAX_CHANGES))


def _lines(answer: tuple[int, str]) -> list[str]:
    status, out = answer
    return [line for line in out.splitlines() if line.strip()] if status == 0 else []
