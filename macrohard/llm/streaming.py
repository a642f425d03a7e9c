"""Reading a streamed answer under a CallWatch: progress told, cut on request, hard deadline.

Between chunks the reader asks the watch whether to stop. A server can also go silent
(a long prompt still being read, a stalled worker): a watchdog thread then asks the
watch on the reader's behalf and, at the deadline or a cut, shuts the connection's
socket down, which wakes the blocked read at once. Closing the connection is also what
tells llama.cpp's and vLLM's servers to stop generating.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from macrohard.errors import CallCut
from macrohard.llm.base import CallWatch
from macrohard.llm.wire import Answer, StreamAssembler, estimate_tokens

# How often the watchdog looks at a silent stream.
POLL_S = 0.2


class Response(Protocol):
    """What the reader needs of the HTTP response: its extensions (for the socket) and close()."""

    @property
    def extensions(self) -> Mapping[str, Any]: ...

    def close(self) -> None: ...


class EmptyStream(Exception):
    """The stream ended, or its connection broke, before its first chunk: the server failed
    and said nothing. llama-cpp-python's server does this for a request over its window
    (the same request unstreamed gets a 400 context_length_exceeded).
    """


class StreamTimeout(TimeoutError):
    """The deadline came before the end of the answer; `chars` of it had arrived."""

    def __init__(self, chars: int) -> None:
        super().__init__(f"deadline reached after {chars} characters")
        self.chars = chars


@dataclass
class Deadline:
    """How long one attempt may take, and whether the run's wall budget (not timeout_s) set it."""

    seconds: float
    by_budget: bool
    prompt_chars: int  # what the request carries, for estimates of its cost
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.at


class _Watchdog(threading.Thread):
    def __init__(self, response: Response, deadline: Deadline, watch: CallWatch | None) -> None:
        super().__init__(name="macrohard-stream-watchdog", daemon=True)
        self.response, self.deadline, self.watch = response, deadline, watch
        self.reason: str | None = None  # set when the watch asked for a cut
        self.fired = False  # the watchdog shut the connection (a cut, or the deadline)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(POLL_S):
            if self.deadline.expired():
                break
            reason = self.watch.cut() if self.watch is not None else None
            if reason:
                self.reason = reason
                break
        else:
            return
        self._abort()

    def _abort(self) -> None:
        self.fired = True
        shut(self.response)

    def stop(self) -> None:
        self._done.set()


def shut(response: Response) -> None:
    """Shut the response's connection down: a read blocked on it wakes, and it is never reused."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        try:
            # The plain socket's shutdown, also for TLS: it wakes a read blocked in another thread.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def read_stream(
    chunks: Iterable[Any],
    response: Response,
    deadline: Deadline,
    watch: CallWatch | None,
    broken: tuple[type[Exception], ...] = (OSError,),
) -> Answer:
    """Assemble the answer from the chunks (SDK objects or dicts), or raise.

    CallCut when the watch asked to stop; StreamTimeout at the deadline; EmptyStream for
    a stream without a chunk (ended, or `broken`: what the transport raises for a broken
    connection); whatever the transport raised otherwise. The response is closed in
    every case.
    """
    assembler = StreamAssembler()
    told = 0
    dog = _Watchdog(response, deadline, watch)
    dog.start()
    try:
        for chunk in chunks:
            assembler.add(chunk if isinstance(chunk, Mapping) else chunk.to_dict())
            if watch is not None and assembler.chars > told:
                told = assembler.chars
                watch.streamed(told)
            if deadline.expired():
                raise StreamTimeout(assembler.chars)
            reason = watch.cut() if watch is not None else None
            if reason:
                raise CallCut(reason, **_spent(deadline, assembler))
    except (CallCut, StreamTimeout):
        raise
    except Exception as e:
        if dog.reason:  # the watchdog cut a silent stream: say why, not how the read failed
            raise CallCut(dog.reason, **_spent(deadline, assembler)) from None
        if deadline.expired():
            raise StreamTimeout(assembler.chars) from None
        if assembler.chunks == 0 and isinstance(e, broken):
            raise EmptyStream from None
        raise
    else:
        if assembler.chunks == 0:
            # The server that failed may close this connection any moment: take no chance
            # that the next request goes out on it.
            shut(response)
    finally:
        dog.stop()
        response.close()
    if dog.fired and assembler.finish_reason is None:
        # A server that ends its body by closing the connection makes a shut socket look
        # like the end of the answer: it was not.
        if dog.reason:
            raise CallCut(dog.reason, **_spent(deadline, assembler))
        raise StreamTimeout(assembler.chars)
    if assembler.chunks == 0:
        raise EmptyStream
    return assembler.answer()


def _spent(deadline: Deadline, assembler: StreamAssembler) -> dict[str, int]:
    return {"prompt_tokens": estimate_tokens(deadline.prompt_chars), "completion_tokens": estimate_tokens(assembler.chars)}
