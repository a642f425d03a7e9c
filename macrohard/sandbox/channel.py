"""The attached stream to a sandbox's command runner: Docker's multiplexed frames on a
raw socket, carrying the runner's own frames (runner.HEADER), read with deadlines."""

from __future__ import annotations

import contextlib
import selectors
import time
from typing import Any

from macrohard.sandbox import runner
from macrohard.sandbox.image import one_line

META_LIMIT = 4096


def render(head: bytes, tail: bytes, total: int) -> tuple[str, bool]:
    """The text of capped output and whether anything was dropped."""
    kept = len(head) + len(tail)
    if total <= kept:
        return decode(head + tail), False
    omitted = total - kept
    return f"{decode(head)}\n... [{omitted} bytes omitted] ...\n{decode(tail)}", True


class Backstop(Exception):
    """The runner did not answer by the client's deadline."""


class RunnerLost(Exception):
    """The runner's stream ended or broke the protocol."""


class Channel:
    """The runner's attached stdin and stdout: Docker's multiplexed stream on a raw socket.

    Docker frames (an 8-byte header naming stdout or stderr, then the payload) carry
    the runner's stdout, which holds the runner's own frames (runner.HEADER).
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._raw = bytearray()
        self._out = bytearray()
        self._err = bytearray()
        self._closed = False

    def send(self, data: bytes) -> None:
        # SocketIO (unix and plain TCP) wraps the socket; TLS and SSH give it directly.
        getattr(self._sock, "_sock", self._sock).sendall(data)

    def frame(self, deadline: float, max_size: int) -> tuple[bytes, bytes]:
        """The runner's next frame; Backstop after `deadline`, RunnerLost at the end of the stream."""
        while True:
            if len(self._out) >= runner.HEADER.size:
                kind, size = runner.HEADER.unpack_from(self._out)
                if size > max_size:
                    raise RunnerLost(f"oversized frame ({size} bytes)")
                end = runner.HEADER.size + size
                if len(self._out) >= end:
                    payload = bytes(self._out[runner.HEADER.size : end])
                    del self._out[:end]
                    return kind, payload
            self._fill(deadline)

    def alive(self) -> bool:
        """False if the runner has gone (or said something unasked) since the last answer."""
        if self._closed:
            return False
        pending = getattr(self._sock, "pending", None)
        return not (pending and pending()) and not self._selector.select(0)

    def stderr(self) -> str:
        return one_line(decode(self._err))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError, ValueError, KeyError):
                self._selector.close()
            close_socket(self._sock)

    def _fill(self, deadline: float) -> None:
        chunk = read_some(self._sock, self._selector, 1 << 16, deadline)
        if not chunk:
            raise RunnerLost(self.stderr() or "the runner's stream ended")
        self._raw += chunk
        while len(self._raw) >= 8:
            stream, size = self._raw[0], int.from_bytes(self._raw[4:8], "big")
            if len(self._raw) < 8 + size:
                break
            payload = self._raw[8 : 8 + size]
            del self._raw[: 8 + size]
            if stream == 1:
                self._out += payload
            elif stream == 2:
                self._err = (self._err + payload)[-META_LIMIT:]


def read_some(sock: Any, selector: selectors.BaseSelector, n: int, deadline: float) -> bytes:
    """Read up to n bytes, waiting no later than `deadline`; b"" at end of stream."""
    # TLS sockets can hold decrypted bytes that select() cannot see.
    pending = getattr(sock, "pending", None)
    while not (pending and pending()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Backstop
        if selector.select(remaining):
            break
    data = sock.recv(n) if hasattr(sock, "recv") else sock.read(n)
    return data or b""


def close_socket(sock: Any) -> None:
    # The SDK keeps the HTTP response on the socket; close both or the fd leaks.
    response = getattr(sock, "_response", None)
    for closable in (response, sock):
        if closable is not None:
            # ValueError: the socket was already closed underneath the response.
            with contextlib.suppress(OSError, ValueError):
                closable.close()


def decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")
