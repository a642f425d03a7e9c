"""OpenAIChatModel against a real local HTTP server: what it sends, and how it reads answers."""

from __future__ import annotations

import json

import pytest
from calls import ENV, KEY, READ_FILE, ask, make_model, tool_call
from chat_server import ChatServer, Reply, completion

from macrohard.config import ModelSettings
from macrohard.errors import ConfigError
from macrohard.llm.base import Message, ModelRequest, ToolCall
from macrohard.llm.openai import PLACEHOLDER_KEY, OpenAIChatModel


def history() -> list[Message]:
    """A conversation with an answered tool call, as the agent loop sends it."""
    return [
        Message(role="system", content="You are an engineer."),
        Message(role="user", content="Read a.py"),
        Message(role="assistant", tool_calls=[ToolCall(id="call_9", name="read_file", arguments='{"path":"a.py"}')]),
        Message(role="tool", content="print('a')", tool_call_id="call_9"),
    ]


def test_text_answer_with_usage_and_latency(server: ChatServer) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5}
    server.push(Reply(body=completion("Hi there.", usage=usage), delay_s=0.05))
    response = ask(make_model(server.base_url, stream=False))
    assert response.message.role == "assistant"
    assert response.message.content == "Hi there."
    assert response.message.tool_calls == []
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 5)
    assert response.usage.estimated is False
    assert response.finish_reason == "stop"
    # Priced and budgeted by the name configured; the endpoint's own name is kept too.
    assert (response.model, response.served_model) == ("test-model", "served-model")
    assert 0.05 <= response.latency_s < 5


def test_tool_calls_keep_raw_arguments_even_when_malformed(server: ChatServer) -> None:
    server.push(completion(None, tool_calls=[tool_call("call_1", '{"path": "a.py"}'), tool_call("call_2", '{"path": "b.py')]))
    response = ask(make_model(server.base_url), tools=[READ_FILE])
    assert response.message.content is None
    assert response.message.tool_calls == [
        ToolCall(id="call_1", name="read_file", arguments='{"path": "a.py"}'),
        ToolCall(id="call_2", name="read_file", arguments='{"path": "b.py'),
    ]
    assert response.finish_reason == "tool_calls"


def test_request_body_is_shaped_for_common_servers(server: ChatServer) -> None:
    server.push(completion("done"))
    model = make_model(server.base_url, temperature=0.2, max_tokens=1000, stream=False)
    model.complete(ModelRequest(messages=history(), tools=[READ_FILE], role="engineer", task="T-1"))

    got = server.received[0]
    assert got.path == "/v1/chat/completions"
    assert got.headers["authorization"] == f"Bearer {KEY}"
    body = got.body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("test-model", 0.2, 1000)
    # llama-cpp-python's server makes no tool calls without it.
    assert body["tool_choice"] == "auto"
    assert "stream" not in body and "stream_options" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You are an engineer."},
        {"role": "user", "content": "Read a.py"},
        # "" and never null: llama-cpp-python's server answers a null content with HTTP 500.
        {"role": "assistant", "content": "", "tool_calls": [tool_call("call_9", '{"path":"a.py"}')]},
        {"role": "tool", "tool_call_id": "call_9", "content": "print('a')"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "read_file", "description": "Read a file in the worktree.", "parameters": READ_FILE.parameters},
        }
    ]


def test_the_same_conversation_is_sent_as_the_same_bytes(server: ChatServer) -> None:
    # Provider prompt caches hit only on a byte-stable prefix.
    server.push(completion("a"), completion("b"))
    model = make_model(server.base_url)
    for _ in range(2):
        model.complete(ModelRequest(messages=history(), tools=[READ_FILE], role="engineer", task="T-1"))
    first, second = (json.dumps(r.body) for r in server.received)
    assert first == second


def test_streaming_is_asked_with_usage(server: ChatServer) -> None:
    server.push(completion("ok"))  # a server may answer a stream request with plain JSON
    response = ask(make_model(server.base_url))
    body = server.received[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert response.message.content == "ok"


def test_without_tools_no_tool_choice_and_unset_parameters_are_left_out(server: ChatServer) -> None:
    server.push(completion("ok"))
    ask(make_model(server.base_url, max_tokens=None, stream=False))
    body = server.received[0].body
    for absent in ("tools", "tool_choice", "temperature", "max_tokens"):
        assert absent not in body


def test_tool_choice_follows_the_settings(server: ChatServer) -> None:
    server.push(completion("ok"), completion("ok"))
    ask(make_model(server.base_url, tool_choice="required"), tools=[READ_FILE])
    ask(make_model(server.base_url, tool_choice=None), tools=[READ_FILE])
    assert server.received[0].body["tool_choice"] == "required"
    assert "tool_choice" not in server.received[1].body


def test_dropped_parameters_are_never_sent(server: ChatServer) -> None:
    # o-series models refuse a temperature; some servers refuse stream_options or tool_choice.
    server.push(completion("ok"))
    drop = ["temperature", "max_tokens", "tool_choice", "stream_options"]
    ask(make_model(server.base_url, temperature=0.5, drop=drop), tools=[READ_FILE])
    body = server.received[0].body
    assert body["stream"] is True
    for absent in drop:
        assert absent not in body


def test_malformed_arguments_in_the_history_are_sent_as_a_json_object(server: ChatServer) -> None:
    # vLLM json.loads replayed arguments and fails the whole request on malformed ones.
    cut_off = '{"path": "big.py", "content": "def f(:'
    calls = [
        ToolCall(id="c1", name="write_file", arguments=cut_off),
        ToolCall(id="c2", name="list_files", arguments=""),
        ToolCall(id="c3", name="read_file", arguments='["a.py"]'),
        ToolCall(id="c4", name="read_file", arguments='{"path":  "a.py"}'),
    ]
    messages = [Message(role="user", content="go"), Message(role="assistant", content="Writing.", tool_calls=calls)]
    messages += [Message(role="tool", content="error", tool_call_id=c.id) for c in calls]
    server.push(completion("ok"))
    make_model(server.base_url).complete(ModelRequest(messages=messages, role="engineer", task="T-1"))
    sent = [c["function"]["arguments"] for c in server.received[0].body["messages"][1]["tool_calls"]]
    decoded = [json.loads(a) for a in sent]
    assert all(isinstance(d, dict) for d in decoded)
    assert decoded[0] == {"unparsed_arguments": cut_off}  # the model still sees what it wrote
    assert decoded[1] == {}
    assert decoded[2] == {"unparsed_arguments": '["a.py"]'}
    assert sent[3] == '{"path":  "a.py"}'  # valid arguments go unchanged, byte for byte


def test_missing_usage_is_estimated_from_what_was_sent_and_received(server: ChatServer) -> None:
    server.push(completion("x" * 400))  # no usage at all
    response = ask(make_model(server.base_url, stream=False), text="y" * 4000)
    usage = response.usage
    assert usage.estimated is True
    assert 1000 <= usage.prompt_tokens <= 1100  # about 4 characters a token of the request
    assert usage.completion_tokens == 100


def test_cached_and_reasoning_tokens_are_recorded(server: ChatServer) -> None:
    openai_shape = completion("a", usage={"prompt_tokens": 1000, "completion_tokens": 300})
    openai_shape["usage"] |= {"prompt_tokens_details": {"cached_tokens": 900}, "completion_tokens_details": {"reasoning_tokens": 200}}
    # xAI counts reasoning tokens beside completion_tokens, not within: total_tokens says so.
    xai_shape = completion("b")
    xai_shape["usage"] = {"prompt_tokens": 206, "completion_tokens": 50, "total_tokens": 414,
                          "prompt_tokens_details": {"cached_tokens": 194},
                          "completion_tokens_details": {"reasoning_tokens": 158}}
    server.push(openai_shape, xai_shape)
    model = make_model(server.base_url, stream=False)
    first, second = ask(model).usage, ask(model).usage
    assert (first.prompt_tokens, first.completion_tokens, first.cached_tokens, first.reasoning_tokens) == (1000, 300, 900, 200)
    assert (second.prompt_tokens, second.completion_tokens, second.cached_tokens, second.reasoning_tokens) == (206, 208, 194, 158)
    assert second.total_tokens == 414 and not second.estimated


def test_reasoning_content_is_kept_but_not_sent_back(server: ChatServer) -> None:
    body = completion("The answer is 4.")
    body["choices"][0]["message"]["reasoning_content"] = "2 + 2 is 4."
    server.push(body, completion("ok"))
    model = make_model(server.base_url)
    answer = ask(model).message
    assert (answer.content, answer.reasoning) == ("The answer is 4.", "2 + 2 is 4.")
    model.complete(ModelRequest(messages=[Message(role="user", content="2+2?"), answer], role="engineer", task="T-1"))
    replayed = server.received[1].body["messages"][1]
    assert replayed == {"role": "assistant", "content": "The answer is 4."}


def test_finish_reason_length_is_returned(server: ChatServer) -> None:
    body = completion(None, tool_calls=[tool_call("c1", '{"path": "a.py", "content": "de')])
    body["choices"][0]["finish_reason"] = "length"
    server.push(body)
    response = ask(make_model(server.base_url), tools=[READ_FILE])
    assert response.finish_reason == "length"


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
