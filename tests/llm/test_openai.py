"""OpenAIChatModel against a real local HTTP server speaking chat completions."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from chat_server import ChatServer, Reply, completion, error

from macrohard.config import ModelSettings
from macrohard.errors import ConfigError, ModelError
from macrohard.llm.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from macrohard.llm.openai import PLACEHOLDER_KEY, OpenAIChatModel

KEY = "sk-test-SECRET-0123456789"
ENV = {"TEST_LLM_KEY": KEY}

READ_FILE = ToolSpec(
    name="read_file",
    description="Read a file in the worktree.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    s = ChatServer().start()
    yield s
    s.stop()


def make_model(base_url: str | None, *, max_retries: int = 2, **kw: object) -> OpenAIChatModel:
    settings = ModelSettings(
        model="test-model", base_url=base_url, api_key_env="TEST_LLM_KEY", max_retries=max_retries, **kw
    )
    return OpenAIChatModel(settings, environ=ENV)


def ask(model: OpenAIChatModel, text: str = "hello", tools: list[ToolSpec] | None = None) -> ModelResponse:
    request = ModelRequest(
        messages=[Message(role="user", content=text)], tools=tools or [], role="engineer", task="T-1"
    )
    return model.complete(request)


def tool_call(call_id: str, arguments: str) -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": "read_file", "arguments": arguments}}


def test_text_answer_with_usage_and_latency(server: ChatServer) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5}
    server.push(Reply(body=completion("Hi there.", usage=usage), delay_s=0.05))
    response = ask(make_model(server.base_url))
    assert response.message.role == "assistant"
    assert response.message.content == "Hi there."
    assert response.message.tool_calls == []
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 5)
    assert response.usage.estimated is False
    # Priced and budgeted by the name configured; the endpoint's own name is kept too.
    assert (response.model, response.served_model) == ("test-model", "served-model")
    assert 0.05 <= response.latency_s < 5


def test_tool_calls_keep_raw_arguments_even_when_malformed(server: ChatServer) -> None:
    server.push(
        completion(
            None,
            tool_calls=[
                tool_call("call_1", '{"path": "a.py"}'),
                tool_call("call_2", '{"path": "b.py'),
            ],
        )
    )
    response = ask(make_model(server.base_url), tools=[READ_FILE])
    assert response.message.content is None
    assert response.message.tool_calls == [
        ToolCall(id="call_1", name="read_file", arguments='{"path": "a.py"}'),
        ToolCall(id="call_2", name="read_file", arguments='{"path": "b.py'),
    ]
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (0, 0)  # server sent none


def test_request_body_is_in_openai_format(server: ChatServer) -> None:
    server.push(completion("done"))
    model = make_model(server.base_url, temperature=0.2)
    messages = [
        Message(role="system", content="You are an engineer."),
        Message(role="user", content="Read a.py"),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="call_9", name="read_file", arguments='{"path":"a.py"}')],
        ),
        Message(role="tool", content="print('a')", tool_call_id="call_9"),
    ]
    model.complete(ModelRequest(messages=messages, tools=[READ_FILE], role="engineer", task="T-1"))

    assert len(server.received) == 1
    got = server.received[0]
    assert got.path == "/v1/chat/completions"
    assert got.headers["authorization"] == f"Bearer {KEY}"
    body = got.body
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "You are an engineer."},
        {"role": "user", "content": "Read a.py"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_9", '{"path":"a.py"}')],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "print('a')"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file in the worktree.",
                "parameters": READ_FILE.parameters,
            },
        }
    ]


def test_no_tools_and_no_temperature_are_left_out(server: ChatServer) -> None:
    server.push(completion("ok"))
    ask(make_model(server.base_url))
    assert "tools" not in server.received[0].body
    assert "temperature" not in server.received[0].body


def test_rate_limit_is_retried_by_the_sdk(server: ChatServer) -> None:
    server.push(error(429, "slow down", **{"retry-after-ms": "10"}), completion("after the wait"))
    response = ask(make_model(server.base_url))
    assert response.message.content == "after the wait"
    assert len(server.received) == 2


def test_rate_limit_after_retries_says_so(server: ChatServer) -> None:
    server.push(*[error(429, "slow down", **{"retry-after-ms": "10"}) for _ in range(2)])
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=1))
    assert len(server.received) == 2
    assert "429" in e.value.message and server.base_url in e.value.message
    assert e.value.hint is not None and "max_parallel" in e.value.hint


def test_server_error_is_retried(server: ChatServer) -> None:
    server.push(error(503, "overloaded", **{"retry-after-ms": "10"}), completion("back"))
    assert ask(make_model(server.base_url)).message.content == "back"
    assert len(server.received) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(server: ChatServer, status: int) -> None:
    server.push(error(status, "tools are not supported\nby this model"))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3))
    assert len(server.received) == 1
    message = e.value.message
    assert server.base_url in message and str(status) in message
    assert "tools are not supported by this model" in message  # the server's reason, on one line
    assert "\n" not in str(e.value)
    if status == 404:
        assert e.value.hint is not None and "test-model" in e.value.hint and "base_url" in e.value.hint


def test_unauthorized_never_shows_the_key(server: ChatServer) -> None:
    # Real servers echo the key they were given; it must not reach our error.
    server.push(error(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url))
    assert len(server.received) == 1
    assert "401" in e.value.message
    assert e.value.hint is not None and "TEST_LLM_KEY" in e.value.hint
    for text in (str(e.value), repr(e.value), e.value.message, e.value.hint):
        assert KEY not in text
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_closed_port_is_a_model_error_naming_the_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    with pytest.raises(ModelError) as e:
        ask(make_model(base_url, max_retries=1))
    assert base_url in e.value.message
    assert e.value.hint is not None and "running" in e.value.hint
    # One retry means one backoff sleep of at least 0.5 s less 25 % jitter.
    assert time.monotonic() - start >= 0.35


def test_dropped_connections_are_retried_then_reported(server: ChatServer) -> None:
    server.push(*[Reply(drop=True) for _ in range(3)])
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=1))
    assert len(server.received) == 2  # the first try and max_retries=1 retry
    assert server.base_url in e.value.message


def test_timeout_is_a_model_error(server: ChatServer) -> None:
    server.push(Reply(body=completion("too late"), delay_s=1.0))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=0, timeout_s=0.2))
    assert "0.2s" in e.value.message and server.base_url in e.value.message


def test_local_server_without_key_gets_a_placeholder(server: ChatServer) -> None:
    server.push(completion("ok"))
    settings = ModelSettings(model="llama3", base_url=server.base_url, api_key_env="TEST_LLM_KEY")
    OpenAIChatModel(settings, environ={}).complete(
        ModelRequest(messages=[Message(role="user", content="hi")], role="engineer", task="T-1")
    )
    assert server.received[0].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_missing_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        OpenAIChatModel(ModelSettings(base_url="http://127.0.0.1:1/v1"), environ=ENV)
    assert e.value.hint is not None and "MACROHARD_MODEL__MODEL" in e.value.hint


def test_missing_key_for_openai_is_a_config_error() -> None:
    settings = ModelSettings(model="gpt-4.1", api_key_env="TEST_LLM_KEY")
    with pytest.raises(ConfigError) as e:
        OpenAIChatModel(settings, environ={"OPENAI_API_KEY": "not-the-named-variable"})
    assert "TEST_LLM_KEY" in str(e.value)
    # An empty variable is as good as none.
    with pytest.raises(ConfigError):
        OpenAIChatModel(settings, environ={"TEST_LLM_KEY": ""})
