"""Territories: which paths of the product a role may change.

A role file's front matter lists glob patterns (`territory:`). `**` matches any number
of folders, `*` and `?` stay within one path segment, and a pattern starting with `!`
takes paths back out. The last pattern that matches a path decides, as in .gitignore.

The orchestrator enforces territories, not the prompts: the file tools refuse a write
outside one, and each commit puts back whatever a role changed outside its own (the
shell can change anything). No I/O here: this is a pure function of paths.
"""

from __future__ import annotations

import functools
import re

from pydantic import BaseModel, Field, field_validator

# Everything a test runner reads as code or configuration: whoever may change these
# decides the verdict, so they belong to the tester alone.
TEST_RUNNER_FILES = [
    "tests/**",
    "test/**",
    "**/conftest.py",
    "**/test_*.py",
    "**/*_test.py",
    "pytest.ini",
    ".pytest.ini",
    "pytest.toml",
    ".pytest.toml",
    "tox.ini",
    "**/*customize.py",
    "**/*.pth",
    "**/*.dist-info/**",
    "**/*.egg-info/**",
    # Top-level modules that would shadow the runner or its plugin machinery.
    "pytest.py",
    "pytest/**",
    "_pytest/**",
    "pluggy/**",
    "py.py",
    # node --test's own choice of files when given none (any file under test/ is above).
    "**/test.js",
    "**/test-*.js",
    "**/*.test.js",
    "**/*-test.js",
    "**/*_test.js",
    "**/test.cjs",
    "**/test-*.cjs",
    "**/*.test.cjs",
    "**/*-test.cjs",
    "**/*_test.cjs",
    "**/test.mjs",
    "**/test-*.mjs",
    "**/*.test.mjs",
    "**/*-test.mjs",
    "**/*_test.mjs",
]
DOCS = ["docs/**"]
RELEASE_FILES = ["RELEASE_NOTES.md", "CHANGELOG.md"]
# How the product's image is built (checked by the orchestrator before any build): the deployer's.
IMAGE_FILES = ["Dockerfile", ".dockerignore"]

# Sections of shared files that configure the runner: owned by the tester even
# though the rest of the file (a product's metadata, dependencies) is the engineer's.
RUNNER_SECTIONS = {
    "pyproject.toml": ("tool", "pytest"),
    "setup.cfg": ("tool:pytest",),
}


class Territory(BaseModel):
    """The glob patterns of one role; empty means it may change nothing."""

    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _check(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            body = p[1:] if p.startswith("!") else p
            if not body or body.startswith("/") or ".." in body.split("/"):
                raise ValueError(f"territory pattern {p!r} must be a relative glob such as 'tests/**'")
        return patterns

    def allows(self, path: str) -> bool:
        allowed = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if _compile(pattern[1:] if negated else pattern).fullmatch(path):
                allowed = not negated
        return allowed

    def describe(self) -> str:
        return ", ".join(self.patterns) or "nothing"


@functools.cache
def _compile(glob: str) -> re.Pattern[str]:
    if glob.endswith("/**"):
        # A folder's pattern holds the folder itself too: whoever owns tests/** owns the
        # path `tests`, so no other role can make it a link somewhere else.
        inner = _compile(glob[: -len("/**")]).pattern
        return re.compile(f"{inner}(?:/.*)?")
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def default_territories() -> dict[str, list[str]]:
    """What each bundled role owns when its file says nothing."""
    product = ["**", *(f"!{p}" for p in [*TEST_RUNNER_FILES, *DOCS, *RELEASE_FILES, *IMAGE_FILES, ".gitmodules"])]
    return {
        "product_manager": list(DOCS),
        "engineer": product,
        "tester": list(TEST_RUNNER_FILES),
        "deployer": [*RELEASE_FILES, *IMAGE_FILES],
    }


def owner_of(path: str, territories: dict[str, Territory]) -> str | None:
    """The first role whose territory holds path (for telling a role who to ask)."""
    return next((name for name, t in sorted(territories.items()) if t.allows(path)), None)
