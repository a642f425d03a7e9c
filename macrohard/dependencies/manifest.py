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

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel

MANIFESTS = ("requirements.txt", "pyproject.toml")
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
    """Each line parsed as a PEP 508 requirement and written out again as packaging prints it.

    pip is never given the product's text: requirements-file syntax (a trailing backslash
    joining lines, ${VAR} from the host's environment, per-line options such as
    --no-binary that turn source builds back on) would apply to it. Only what packaging
    parses, with no URL, goes on, and it goes to pip as arguments.
    """
    if len(requirements) > MAX_REQUIREMENTS:
        raise ManifestError(f"{source} lists {len(requirements)} requirements, more than {MAX_REQUIREMENTS}")
    out = []
    for raw in requirements:
        line = raw.strip()
        if _FORBIDDEN.search(line) or any(c in line for c in "\\$"):
            raise ManifestError(
                f"{source}: {line!r} is not a plain requirement: options, URLs, paths, variables, line continuations "
                "and editable installs are not allowed (the index comes from the user's configuration); write a name "
                "and a version, e.g. requests>=2.31"
            )
        try:
            parsed = Requirement(line)
        except InvalidRequirement as e:
            raise ManifestError(f"{source}: {line!r} is not a requirement (a package name, then an optional version): "
                                f"{e}") from None
        if parsed.url:
            raise ManifestError(f"{source}: {line!r} names a URL: only packages from the configured index are allowed")
        out.append(str(parsed))
    return sorted(set(out), key=lambda r: (canonical(Requirement(r).name), r))


def requirement_name(requirement: str) -> str:
    try:
        return canonical(Requirement(requirement).name)
    except InvalidRequirement:
        return requirement


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
