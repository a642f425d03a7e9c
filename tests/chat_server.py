"""A scriptable OpenAI chat-completions server on 127.0.0.1, for tests over real HTTP.

A reply is a JSON body, an error, a dropped connection, or a stream of server-sent
events (`chunks`), which can pause between events or go silent before the end.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer; `drop` closes the connection without answering.

    With `chunks`, a 200 text/event-stream: each chunk as one `data:` event,
    `chunk_delay_s` apart, then silence for `hold_s`, then `data: [DONE]` (if `done`);
    sent with chunked transfer encoding as uvicorn does, or (`chunked=False`) as a body
    that ends when the connection closes; `abort` closes the connection mid-body instead
    of ending it.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    chunks: list[dict[str, Any]] | None = None
    chunk_delay_s: float = 0.0
    hold_s: float = 0.0
    done: bool = True
    chunked: bool = True
    abort: bool = False


@dataclass
class Received:
    """One request as the server saw it; header names in lower case."""

    path: str
    headers: dict[str, str]
    body: Any


def completion(
    content: str | None = "ok",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "served-model",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A chat.completion body as an OpenAI-compatible server would send it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "served-model",
) -> dict[str, Any]:
    """One chat.completion.chunk; with only `usage`, the choice-less last chunk of include_usage."""
    body: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
                            "model": model, "choices": []}
    if delta is not None or finish_reason is not None:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
    if usage is not None:
        body["usage"] = usage
    return body


def text_chunks(text: str, *, size: int = 4, finish_reason: str = "stop") -> list[dict[str, Any]]:
    """A text answer streamed `size` characters at a time."""
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    first = [chunk({"role": "assistant", "content": ""})]
    return first + [chunk({"content": p}) for p in pieces] + [chunk({}, finish_reason=finish_reason)]


def error(status: int, message: str, **headers: str) -> Reply:
    """An error reply shaped like OpenAI's `{"error": {...}}`."""
    return Reply(status, {"error": {"message": message, "type": "test_error", "code": None}}, headers)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that cut a stream reset their connection: that is what tests do.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class ChatServer:
    """Answers POST /v1/chat/completions from a queue of `Reply`s and records each request."""

    def __init__(self, responder: Callable[[Received], Reply] | None = None) -> None:
        # Answers from `responder` when given (a model that reads the request), else from the queue.
        self.responder = responder
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        # Streams whose client went away before the end (a write to it failed).
        self.abandoned = 0
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll keeps shutdown(), and so each test's teardown, fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *replies: Reply | dict[str, Any]) -> None:
        """Queue replies; a bare dict is a 200 with that JSON body."""
        for r in replies:
            self.replies.append(r if isinstance(r, Reply) else Reply(body=r))

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if received.path != "/v1/chat/completions":
                return error(404, f"no route {received.path}")
            if self.responder is not None:
                return self.responder(received)
            # 418 is not retried, so a script that ran short fails the test at once.
            return self.replies.popleft() if self.replies else error(418, "script ran out")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as real servers

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._next(Received(self.path, headers, body))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.chunks is not None:
                    self._stream(reply)
                    return
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def _stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()

                def send(data: bytes) -> None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if reply.chunked else data)
                    self.wfile.flush()

                events = [f"data: {json.dumps(c)}\n\n".encode() for c in reply.chunks or []]
                try:
                    for i, event in enumerate(events):
                        if i and reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                        send(event)
                    time.sleep(reply.hold_s)
                    if reply.done:
                        send(b"data: [DONE]\n\n")
                    if reply.abort:
                        self.close_connection = True
                    elif reply.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:
                        server.abandoned += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        return Handler
