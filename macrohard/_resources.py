"""Where the bundled roles, sandbox image definition and demo live.

In a source checkout they sit at the top of the repository, where users edit them;
a built wheel carries a copy under macrohard/_bundled.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NAMES = {"roles": "roles", "docker": "docker", "demo": "examples/demo"}


def resource_dir(name: str) -> Path:
    bundled = _PACKAGE / "_bundled" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / _NAMES[name]
