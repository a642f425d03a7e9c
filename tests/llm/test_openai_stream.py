"""Streamed answers over real HTTP: assembly, progress, cuts, silence and the deadline."""

from __future__ import annotations

import threading
import time

import pytest
from calls import READ_FILE, Watch, ask, make_model
from chat_server import ChatServer, Reply, chunk, text_chunks

from macrohard.control import RunControl
from macrohard.errors import CallCut, ContextOverflowError, ModelError
from macrohard.llm.base import ToolCall
from macrohard.models import Budget, Usage

USAGE = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
         "prompt_tokens_details": {"cached_tokens": 32}}


def call_delta(index: int, *, call_id: str | None = None, name: str | None = None, args: str = "") -> dict:
    fn: dict = {"arguments": args}
    if name is not None:
        fn["name"] = name
    delta: dict = {"index": index, "function": fn}
    if call_id is not None:
        delta |= {"id": call_id, "type": "function"}
    return {"tool_calls": [delta]}


def test_text_is_assembled_and_usage_read_from_the_last_chunk(server: ChatServer) -> None:
    text = "Hello there, I will read the file first."
    server.push(Reply(chunks=text_chunks(text) + [chunk(usage=USAGE)]))
    watch = Watch()
    response = ask(make_model(server.base_url), watch=watch)
    assert response.message.content == text and response.message.tool_calls == []
    assert response.finish_reason == "stop" and response.served_model == "served-model"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.estimated) == (50, 20, 32, False)
    # Told as the answer grew, ending at its full length.
    assert watch.told == sorted(watch.told) and len(watch.told) > 3 and watch.told[-1] == len(text)


def test_parallel_tool_calls_are_assembled_with_their_ids(server: ChatServer) -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk(call_delta(0, call_id="call_a", name="read_file")),
        chunk(call_delta(0, args='{"pa')),
        chunk(call_delta(1, call_id="call_b", name="read_file", args="")),
        chunk(call_delta(0, args='th": "a.py"}')),
        chunk(call_delta(1, args='{"path": "b.py"}')),
        chunk({}, finish_reason="tool_calls"),
    ]
    server.push(Reply(chunks=chunks))
    response = ask(make_model(server.base_url), tools=[READ_FILE])
    assert response.message.content is None
    assert response.message.tool_calls == [
        ToolCall(id="call_a", name="read_file", arguments='{"path": "a.py"}'),
        ToolCall(id="call_b", name="read_file", arguments='{"path": "b.py"}'),
    ]
    assert response.finish_reason == "tool_calls"


def test_calls_sent_whole_without_an_index_stay_apart(server: ChatServer) -> None:
    # Some servers send each call in one chunk and leave the index out.
    whole = [chunk({"tool_calls": [{"id": f"c{i}", "type": "function",
                                    "function": {"name": "read_file", "arguments": f'{{"path": "{i}.py"}}'}}]})
             for i in range(2)]
    server.push(Reply(chunks=whole + [chunk({}, finish_reason="tool_calls")]))
    calls = ask(make_model(server.base_url), tools=[READ_FILE]).message.tool_calls
    assert [(c.id, c.arguments) for c in calls] == [("c0", '{"path": "0.py"}'), ("c1", '{"path": "1.py"}')]


def test_streamed_reasoning_is_kept_apart_from_the_text(server: ChatServer) -> None:
    chunks = [chunk({"reasoning_content": "Let me think. "}), chunk({"reasoning_content": "Done."}),
              chunk({"content": "Answer."}), chunk({}, finish_reason="stop")]
    server.push(Reply(chunks=chunks))
    message = ask(make_model(server.base_url)).message
    assert (message.content, message.reasoning) == ("Answer.", "Let me think. Done.")


def test_a_stream_without_usage_is_estimated(server: ChatServer) -> None:
    server.push(Reply(chunks=text_chunks("x" * 80)))
    usage = ask(make_model(server.base_url), text="y" * 400).usage
    assert usage.estimated and usage.completion_tokens == 20 and 100 <= usage.prompt_tokens <= 130


def test_a_cut_mid_stream_stops_reading_and_closes_the_connection(server: ChatServer) -> None:
    server.push(Reply(chunks=text_chunks("z" * 400, size=10), chunk_delay_s=0.02))
    watch = Watch(cut_at_chars=100, reason="paused by the user (Ctrl-C)")
    start = time.monotonic()
    with pytest.raises(CallCut) as e:
        ask(make_model(server.base_url, max_retries=3), watch=watch)
    assert time.monotonic() - start < 0.6  # the whole answer takes 0.8 s
    assert e.value.reason == "paused by the user (Ctrl-C)"
    assert e.value.completion_tokens == 25 and e.value.prompt_tokens > 0  # what the discarded answer cost
    assert len(server.received) == 1  # a cut is no failure to retry
    deadline = time.monotonic() + 2
    while server.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.abandoned == 1  # the server saw the connection go, and stopped


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "ends-at-close"])
def test_a_cut_reaches_a_silent_stream(server: ChatServer, chunked: bool) -> None:
    # The server reads a long prompt and sends nothing; a pause must not wait for it.
    server.push(Reply(chunks=[chunk({"role": "assistant", "content": ""})], hold_s=3.0, chunked=chunked))
    watch = Watch(reason="paused by the user (Ctrl-C)")
    threading.Timer(0.3, lambda: setattr(watch, "cut_now", True)).start()
    start = time.monotonic()
    with pytest.raises(CallCut, match="Ctrl-C"):
        ask(make_model(server.base_url), watch=watch)
    assert time.monotonic() - start < 1.5


def test_a_stream_that_outlasts_the_run_is_cut_at_its_deadline(server: ChatServer) -> None:
    server.push(Reply(chunks=text_chunks("w" * 200, size=5), chunk_delay_s=0.05))
    start = time.monotonic()
    with pytest.raises(CallCut, match="time budget reached") as e:
        ask(make_model(server.base_url, timeout_s=60), watch=Watch(left_s=0.4, reason="time budget reached"))
    assert time.monotonic() - start < 1.2
    assert e.value.completion_tokens > 0


def test_a_stalled_stream_is_closed_and_sent_again(server: ChatServer) -> None:
    # Its connection closed, the server stopped working on it: a retry waits behind nothing.
    server.push(Reply(chunks=[chunk({"content": "Hel"})], hold_s=2.0), Reply(chunks=text_chunks("Hello")))
    start = time.monotonic()
    response = ask(make_model(server.base_url, timeout_s=0.4, max_retries=1))
    assert response.message.content == "Hello"
    assert len(server.received) == 2 and time.monotonic() - start < 1.8


def test_a_stream_that_keeps_stalling_fails_naming_the_timeout(server: ChatServer) -> None:
    server.push(*[Reply(chunks=[chunk({"content": "Hel"})], hold_s=1.0) for _ in range(2)])
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, timeout_s=0.3, max_retries=1))
    assert "0.3s" in e.value.message and "after 1 retries" in e.value.message
    assert e.value.hint is not None and "timeout_s" in e.value.hint


def test_an_error_event_mid_stream_is_reported(server: ChatServer) -> None:
    chunks = [chunk({"content": "Hi"}), {"error": {"message": "the request exceeds the available context size",
                                                   "type": "exceed_context_size_error", "code": 400}}]
    server.push(Reply(chunks=chunks))
    with pytest.raises(ModelError, match="context size"):
        ask(make_model(server.base_url))


def test_a_run_controls_watch_cuts_a_stream_when_the_user_pauses(server: ChatServer) -> None:
    server.push(Reply(chunks=text_chunks("v" * 400, size=10), chunk_delay_s=0.02))
    control = RunControl(Budget(), {})
    told: list[int] = []

    def pause_when_long(chars: int) -> None:
        told.append(chars)
        if chars >= 100:
            control.request_pause("paused by the user (Ctrl-C)")

    with pytest.raises(CallCut, match="Ctrl-C") as e:
        ask(make_model(server.base_url), watch=control.watch(on_stream=pause_when_long))
    assert told[-1] < 400
    # What the discarded answer cost still counts.
    control.record_usage("test-model", Usage(prompt_tokens=e.value.prompt_tokens,
                                             completion_tokens=e.value.completion_tokens, estimated=True))
    assert control.spent.tokens >= 25 and control.spent.estimated_tokens == control.spent.tokens


@pytest.mark.parametrize("how", ["ends", "breaks"])
def test_a_stream_without_a_chunk_is_asked_again_unstreamed(server: ChatServer, how: str) -> None:
    # llama-cpp-python's server answers a streamed request over its window with 200 and no
    # event, then closes; unstreamed, the same request gets a 400 context_length_exceeded.
    empty = Reply(chunks=[], done=False, abort=how == "breaks")
    overflow = Reply(400, {"error": {"message": "This model's maximum context length is 8192 tokens.",
                                     "code": "context_length_exceeded"}})
    server.push(empty, overflow)
    with pytest.raises(ContextOverflowError):
        ask(make_model(server.base_url, max_retries=0))
    assert [r.body.get("stream") for r in server.received] == [True, None]
