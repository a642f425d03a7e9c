"""The web audit viewer: runs, timelines, ticket boards, events in full, diffs, costs, live updates.

Needs the `viewer` extra (`pip install 'macrohard[viewer]'`): FastAPI, uvicorn, Jinja2. Importing
this package does not need them, so a command can check a host or report a missing extra first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macrohard.viewer.server import exposure_warning, is_loopback, serve

if TYPE_CHECKING:
    from macrohard.viewer.app import create_app

__all__ = ["create_app", "exposure_warning", "is_loopback", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from macrohard.viewer.app import create_app

        return create_app
    raise AttributeError(name)
