"""The adapter against a real server: llama-cpp-python's, serving SmolLM2-135M-Instruct.

The model's answers are not judged (it is far too weak); what is checked is that the
server accepts what Macrohard sends, and that the adapter reads what it answers.
"""

from __future__ import annotations

import time

import pytest
from calls import READ_FILE, Watch
from llama_server import CONTEXT_WINDOW, LlamaServer

from macrohard.config import ModelSettings
from macrohard.errors import CallCut, ContextOverflowError
from macrohard.llm.base import Message, ModelRequest, ToolCall
from macrohard.llm.openai import OpenAIChatModel

pytestmark = pytest.mark.llama


def model(server: LlamaServer, **kw: object) -> OpenAIChatModel:
    settings = ModelSettings(model="smollm2", base_url=server.base_url, api_key_env="NO_KEY_NEEDED",
                             context_window=CONTEXT_WINDOW, max_retries=0, timeout_s=120, **kw)
    return OpenAIChatModel(settings, environ={})


def tool_history() -> list[Message]:
    """A history as the agent loop sends it: an assistant turn that only called a tool, and the result."""
    return [
        Message(role="system", content="You are an engineer. Use the tools."),
        Message(role="user", content="What does a.py print?"),
        Message(role="assistant", tool_calls=[ToolCall(id="call_1", name="read_file", arguments='{"path": "a.py"}')]),
        Message(role="tool", tool_call_id="call_1", content="print('hello')"),
        Message(role="assistant", tool_calls=[ToolCall(id="call_2", name="read_file", arguments='{"path": "b.py')]),
        Message(role="tool", tool_call_id="call_2", content="error: the arguments are not valid JSON"),
    ]


def test_a_history_with_tool_calls_is_accepted(llama_server: LlamaServer) -> None:
    # This server answered HTTP 500 to the null content Macrohard used to send beside tool calls.
    request = ModelRequest(messages=tool_history(), tools=[READ_FILE], role="engineer", task="T-1")
    response = model(llama_server, max_tokens=48, stream=False).complete(request)
    assert response.finish_reason in ("stop", "length", "tool_calls")
    assert response.usage.prompt_tokens > 20 and response.usage.completion_tokens > 0
    assert not response.usage.estimated
    assert response.message.content or response.message.tool_calls


def test_a_streamed_answer_arrives_with_progress(llama_server: LlamaServer) -> None:
    request = ModelRequest(messages=tool_history(), tools=[READ_FILE], role="engineer", task="T-1")
    watch = Watch()
    response = model(llama_server, max_tokens=48).complete(request, watch)
    assert response.finish_reason in ("stop", "length", "tool_calls")
    assert watch.told and watch.told == sorted(watch.told)
    assert response.usage.completion_tokens > 0  # reported, or estimated where the stream carries none
    assert llama_server.alive()


def test_a_cut_stream_stops_the_server_generating(llama_server: LlamaServer) -> None:
    story = ModelRequest(messages=[Message(role="user", content="Write a very long story about a ship at sea, "
                                           "with many chapters.")], role="engineer", task="T-1")
    with pytest.raises(CallCut):
        model(llama_server, max_tokens=2000).complete(story, Watch(cut_at_chars=40))
    # Its connection closed, the server stopped generating (it goes on for seconds otherwise),
    # so a retry would not wait behind it.
    before = llama_server.cpu_s()
    time.sleep(1.0)
    assert llama_server.cpu_s() - before < 0.3
    start = time.monotonic()
    assert model(llama_server, max_tokens=8).complete(story).message.content is not None
    assert time.monotonic() - start < 30


def test_a_request_over_the_window_is_a_context_overflow(llama_server: LlamaServer) -> None:
    big = "word " * (CONTEXT_WINDOW + 2000)
    request = ModelRequest(messages=[Message(role="user", content=big)], role="engineer", task="T-1")
    for stream in (False, True):
        with pytest.raises(ContextOverflowError):
            model(llama_server, max_tokens=16, stream=stream).complete(request)
    assert llama_server.alive()
