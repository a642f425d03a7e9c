"""What a Python product says it needs: requirements read from its manifest, checked.

A product declares its third-party packages in `requirements.txt` (one requirement a
line) or in `pyproject.toml`'s `[project] dependencies`. Only plain requirements are
accepted (a name, extras, a version range, markers): an index, a URL, a path or an
editable install would let the product choose where code comes from, which only the
user's configuration names. No I/O here: the caller reads the files from git's objects.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib

from pydantic import BaseModel

MANIFESTS = ("requirements.txt", "pyproject.toml")
# PEP 508 names; the rest of a requirement (extras, specifiers, markers) is pip's to read.
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$")
_FORBIDDEN = re.compile(r"(://|@\s*\S|^\s*[./~]|^\s*-)")
MAX_REQUIREMENTS = 200


class ManifestError(ValueError):
    """A manifest the orchestrator will not resolve; the message is for the role."""


class Requirements(BaseModel):
    """The requirements of one tree, in a stable order, and where they came from."""

    items: list[str]
    source: str  # the manifest file, or "" for none

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.items).encode()).hexdigest()


def canonical(name: str) -> str:
    """A project name as indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(files: dict[str, bytes | None]) -> Requirements:
    """The requirements of the first manifest present: requirements.txt, else pyproject.toml."""
    text = files.get("requirements.txt")
    if text is not None:
        return Requirements(items=_checked(_lines(text.decode("utf-8", errors="replace")), "requirements.txt"),
                            source="requirements.txt")
    data = files.get("pyproject.toml")
    if data is not None:
        try:
            project = tomllib.loads(data.decode("utf-8", errors="replace")).get("project") or {}
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(f"pyproject.toml is not valid TOML: {e}") from e
        deps = project.get("dependencies") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise ManifestError("pyproject.toml's [project] dependencies must be a list of requirement strings")
        return Requirements(items=_checked(deps, "pyproject.toml"), source="pyproject.toml")
    return Requirements(items=[], source="")


def _lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip() if " #" in line else line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _checked(requirements: list[str], source: str) -> list[str]:
    if len(requirements) > MAX_REQUIREMENTS:
        raise ManifestError(f"{source} lists {len(requirements)} requirements, more than {MAX_REQUIREMENTS}")
    out = []
    for raw in requirements:
        line = raw.strip()
        if _FORBIDDEN.search(line):
            raise ManifestError(
                f"{source}: {line!r} is not a plain requirement: options, URLs, paths and editable installs are not "
                "allowed (the index comes from the user's configuration); write a name and a version, e.g. requests>=2.31"
            )
        if not _NAME.match(line):
            raise ManifestError(f"{source}: {line!r} is not a requirement (a package name, then an optional version)")
        out.append(" ".join(line.split()))
    return sorted(set(out), key=lambda r: (canonical(_NAME.match(r).group(1)), r))  # type: ignore[union-attr]


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return canonical(match.group(1)) if match else requirement


def node_dependencies(data: bytes) -> list[str]:
    """The packages package.json declares (dependencies of every kind), for a stack with no registry."""
    try:
        manifest = json.loads(data.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise ManifestError(f"package.json is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise ManifestError("package.json must hold a JSON object")
    names: list[str] = []
    for section in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
        declared = manifest.get(section) or {}
        if not isinstance(declared, dict):
            raise ManifestError(f"package.json's {section} must be an object of names and versions")
        names += [str(name) for name in declared]
    return sorted(set(names))
