"""`macrohard serve`: the web audit viewer."""

from __future__ import annotations

from typing import Annotated

import typer

from macrohard.cli.common import ConfigOpt, WorkspacesOpt, console, errors, settings_for, user_errors
from macrohard.cli.show import label, plain
from macrohard.errors import ConfigError


@user_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; it has no login, so keep it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Listen on a non-loopback address anyway; needs --allowed-host, and a token.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None, typer.Option("--allowed-host", help="With --allow-remote: a host name clients use (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Start the web audit viewer: runs, timelines, ticket boards, events, diffs, live updates."""
    import secrets as tokens

    from macrohard.viewer.server import exposure_warning, serve as serve_viewer

    settings = settings_for(config, workspaces=workspaces)
    warning = exposure_warning(host)
    if warning and not allow_remote:
        raise ConfigError(warning, "serve on 127.0.0.1, or pass --allow-remote if you mean it")
    if warning and not allowed_host:
        raise ConfigError("--allow-remote needs the host names clients use", "pass --allowed-host NAME (repeatable)")
    if warning:
        errors.print(label("warning:", "bold yellow", warning), highlight=False, soft_wrap=True)
    if not settings.workspaces.is_dir():
        raise ConfigError(f"there are no runs in {settings.workspaces}", "start one with `macrohard demo`, or pass --workspaces")
    token = tokens.token_urlsafe(24) if warning else None
    where = f"http://{(allowed_host or [host])[0]}:{port}/" + (f"?token={token}" if token else "")
    console.print(plain(f"Viewer for {settings.workspaces.resolve()} at {where}  (Ctrl-C stops it)"))
    serve_viewer(settings.workspaces, host, port, prices=settings.prices, allow_remote=allow_remote,
                 allowed_hosts=allowed_host or (), token=token)
