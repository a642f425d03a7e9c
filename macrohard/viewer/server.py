"""Run the viewer with uvicorn. It has no login, so it listens on loopback unless told otherwise."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from macrohard.config import ModelPrice
from macrohard.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def exposure_warning(host: str) -> str | None:
    """What to tell the user before serving on `host`; None when it is a loopback address."""
    if is_loopback(host):
        return None
    return (
        f"the viewer has no authentication: listening on {host} lets anyone who can reach this machine "
        "read every transcript, prompt and diff in the workspaces folder"
    )


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or ConfigError saying why not (the port is taken, the address is not ours)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"cannot listen on {host}: {getattr(e, 'strerror', None) or e}",
                          "give an address of this machine with --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT, never one in use
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use", "stop what listens there, or pick another with --port N") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", "pick another --host or --port") from None
    return sock


def serve(
    workspaces: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    prices: Mapping[str, tuple[float, float] | ModelPrice] | None = None,
    allow_remote: bool = False,
    allowed_hosts: Sequence[str] = (),
    token: str | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve the viewer until interrupted.

    A host that is not a loopback address raises ConfigError (whose message is
    exposure_warning(host)) unless allow_remote is set; callers show the warning
    either way. The workspaces folder need not hold a run yet, or exist: runs show
    as they appear. The port is bound before `on_listening` is called (to announce
    the URL), so a port in use is an error before anything is announced.
    """
    try:
        import uvicorn

        from macrohard.viewer.app import LOOPBACK_HOSTS, create_app
    except ImportError as e:
        raise ConfigError(f"the web viewer needs {e.name or 'its dependencies'}", "pip install 'macrohard[viewer]'") from None

    warning = exposure_warning(host)
    if warning and not allow_remote:
        raise ConfigError(warning, "serve on 127.0.0.1, or pass --allow-remote if you mean it")
    # Bound to loopback, only loopback names are answered (a guard against DNS rebinding).
    # Bound wider, only the names the user gave (a rebinding page gets no other), and
    # every request needs the token printed at start.
    if warning is not None and (not allowed_hosts or not token):
        raise ConfigError("a viewer reachable from other machines needs the names clients use and a token",
                          "pass --allowed-host NAME (repeatable); `macrohard serve` prints the token")
    hosts = list(LOOPBACK_HOSTS) if warning is None else [*allowed_hosts, *LOOPBACK_HOSTS]
    app = create_app(Path(workspaces), prices, allowed_hosts=hosts, token=token if warning else None)
    sock = bind(host, port)
    if on_listening is not None:
        on_listening()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
