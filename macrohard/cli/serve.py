"""`macrohard serve`: the web audit viewer."""

from __future__ import annotations

from typing import Annotated

import typer

from macrohard.cli.common import ConfigOpt, UsageMistake, WorkspacesOpt, console, errors, settings_for, user_errors
from macrohard.cli.show import label, plain


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"must be from 1 to 65535, not {value}")
    return value


@user_errors
def serve(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on; it has no login, so keep it local.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", callback=_port, help="Port to listen on.")] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Listen on a non-loopback address anyway; needs --allowed-host, and a token.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", metavar="NAME", help="With --allow-remote: a host name clients use (repeatable)."),
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Start the web audit viewer on this machine.

    Runs, timelines, ticket boards, events, diffs and costs, updated live while a run
    goes on. Runs show as they appear: it can be started before the first one.
    """
    import secrets as tokens

    from macrohard.viewer.server import exposure_warning, serve as serve_viewer

    settings = settings_for(config, workspaces=workspaces)
    warning = exposure_warning(host)
    if warning and not allow_remote:
        raise UsageMistake(warning, "serve on 127.0.0.1, or pass --allow-remote if you mean it")
    if warning and not allowed_host:
        raise UsageMistake("--allow-remote needs the host names clients use", "pass --allowed-host NAME (repeatable)")
    if warning:
        errors.print(label("warning:", "bold yellow", warning), highlight=False, soft_wrap=True)
    token = tokens.token_urlsafe(24) if warning else None
    where = f"http://{(allowed_host or [host])[0]}:{port}/" + (f"?token={token}" if token else "")
    folder = settings.workspaces.resolve()
    empty = "" if folder.is_dir() and any(folder.iterdir()) else "; no runs yet, they show as they appear"

    def announce() -> None:
        console.print(plain(f"Viewer for {folder} at {where}  (Ctrl-C stops it{empty})"), soft_wrap=True)

    serve_viewer(settings.workspaces, host, port, prices=settings.prices, allow_remote=allow_remote,
                 allowed_hosts=allowed_host or (), token=token, on_listening=announce)
