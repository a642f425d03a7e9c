"""OpenAIChatModel's refusals over real HTTP: what is retried, what is an overflow, what the user is told."""

from __future__ import annotations

import socket
import time

import pytest
from calls import KEY, READ_FILE, Watch, ask, make_model
from chat_server import ChatServer, Reply, completion, error

from macrohard.errors import CallCut, ContextOverflowError, ModelError

FAST = {"retry-after-ms": "10"}


def test_rate_limit_is_retried_after_the_wait_asked(server: ChatServer) -> None:
    server.push(error(429, "slow down", **{"retry-after": "0.3"}), completion("after the wait"))
    start = time.monotonic()
    response = ask(make_model(server.base_url))
    assert response.message.content == "after the wait"
    assert len(server.received) == 2
    assert time.monotonic() - start >= 0.3


def test_rate_limit_after_retries_says_so(server: ChatServer) -> None:
    server.push(*[error(429, "slow down", **FAST) for _ in range(2)])
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=1))
    assert len(server.received) == 2
    assert "429" in e.value.message and server.base_url in e.value.message and "after 1 retries" in e.value.message
    assert e.value.hint is not None and "max_parallel" in e.value.hint


def test_a_wait_longer_than_a_minute_is_not_waited_for(server: ChatServer) -> None:
    server.push(error(429, "slow down", **{"retry-after": "3600"}))
    start = time.monotonic()
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3))
    assert time.monotonic() - start < 2 and len(server.received) == 1
    assert e.value.hint is not None and "3600s" in e.value.hint


def test_out_of_quota_is_not_retried(server: ChatServer) -> None:
    server.push(Reply(429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3))
    assert len(server.received) == 1
    assert e.value.hint is not None and "billing" in e.value.hint


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_failures_are_retried(server: ChatServer, status: int) -> None:
    server.push(error(status, "overloaded", **FAST), completion("back"))
    assert ask(make_model(server.base_url)).message.content == "back"
    assert len(server.received) == 2


def test_a_server_error_that_says_the_request_is_invalid_is_not_retried(server: ChatServer) -> None:
    # llama-cpp-python answers a request it cannot validate with HTTP 500, as it did to a null content.
    detail = ("7 validation errors:\n  {'type': 'string_type', 'loc': ('body', 'messages', 1, "
              "'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid string', 'input': None}")
    server.push(Reply(500, {"error": {"message": detail, "type": "internal_server_error", "param": None, "code": None}}))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3))
    assert len(server.received) == 1
    assert "HTTP 500" in e.value.message and "validation error" in e.value.message
    assert e.value.hint is not None and "not retried" in e.value.hint


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(server: ChatServer, status: int) -> None:
    server.push(error(status, "something is wrong\nwith this"))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3))
    assert len(server.received) == 1
    message = e.value.message
    assert server.base_url in message and f"HTTP {status}" in message
    assert "something is wrong with this" in message  # the server's reason, on one line
    assert "\n" not in str(e.value)
    if status == 404:
        assert e.value.hint is not None and "test-model" in e.value.hint and "base_url" in e.value.hint


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("tools are not supported by this model", "tool calls"),
        ("Unsupported value: 'temperature' does not support 0.2 with this model.", 'drop = ["temperature"]'),
        ("messages.0: unknown role", "its message says why"),
    ],
)
def test_the_400_hint_fits_the_refusal(server: ChatServer, message: str, hint: str) -> None:
    server.push(error(400, message))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, temperature=0.2), tools=[READ_FILE])
    assert e.value.hint is not None and hint in e.value.hint
    if "tool" not in message:
        assert "tool calls" not in e.value.hint


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


# Each server's words for "the request does not fit the window".
OVERFLOWS = [
    pytest.param(400, {"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages "
                                 "resulted in 9000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}},
                 id="openai"),
    pytest.param(400, {"object": "error", "message": "This model's maximum context length is 32768 tokens. However, you "
                       "requested 40000 tokens (32000 in the messages, 8000 in the completion). Please reduce the length "
                       "of the messages or completion.", "type": "BadRequestError", "code": 400}, id="vllm"),
    pytest.param(400, {"object": "error", "message": "'max_tokens' or 'max_completion_tokens' is too large: 8192. This "
                       "model's maximum context length is 32768 tokens and your request has 30000 input tokens "
                       "(8192 > 32768 - 30000).", "type": "BadRequestError", "code": 400}, id="vllm-max-tokens"),
    pytest.param(400, {"object": "error", "message": "The decoder prompt (length 33000) is longer than the maximum model "
                       "length of 32768.", "type": "BadRequestError", "code": 400}, id="vllm-decoder-prompt"),
    pytest.param(400, {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                                 "type": "exceed_context_size_error", "n_prompt_tokens": 15634, "n_ctx": 8192}}, id="llama.cpp"),
    pytest.param(500, {"error": {"message": "Requested tokens (15634) exceed context window of 8192",
                                 "type": "internal_server_error"}}, id="llama-cpp-python"),
    pytest.param(400, {"error": {"message": "the input length exceeds the context length", "type": "api_error"}},
                 id="ollama"),
    pytest.param(413, {"error": {"message": "Payload Too Large"}}, id="http-413"),
    pytest.param(429, {"error": {"message": "Request too large for gpt-4o in organization org-x on tokens per min (TPM): "
                                 "Limit 30000, Requested 45000.", "type": "tokens", "code": "rate_limit_exceeded"}},
                 id="openai-429-too-large"),
]


@pytest.mark.parametrize(("status", "body"), OVERFLOWS)
def test_context_overflow_is_recognised_and_not_retried(server: ChatServer, status: int, body: dict) -> None:
    server.push(Reply(status, body, FAST))
    with pytest.raises(ContextOverflowError) as e:
        ask(make_model(server.base_url, max_retries=3, context_window=8192))
    assert len(server.received) == 1
    assert server.base_url in e.value.message and f"HTTP {status}" in e.value.message
    assert e.value.hint is not None and "context_window = 8192" in e.value.hint


def test_a_plain_rate_limit_is_no_overflow(server: ChatServer) -> None:
    server.push(error(429, "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, "
                      "Requested 2000.", **FAST), completion("ok"))
    assert ask(make_model(server.base_url)).message.content == "ok"


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


def test_a_request_that_timed_out_unstreamed_is_not_sent_again(server: ChatServer) -> None:
    # A single-worker server would still be busy with it: a retry would queue behind it.
    server.push(Reply(body=completion("too late"), delay_s=1.0), completion("never asked"))
    start = time.monotonic()
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3, timeout_s=0.3, stream=False))
    assert time.monotonic() - start < 0.9
    assert len(server.received) == 1
    assert "0.3s" in e.value.message and server.base_url in e.value.message and "not retried" in e.value.message
    assert e.value.hint is not None and "timeout_s" in e.value.hint and "stream" in e.value.hint


def test_a_call_never_outlasts_the_time_left_in_the_run(server: ChatServer) -> None:
    server.push(Reply(body=completion("too late"), delay_s=1.5))
    start = time.monotonic()
    with pytest.raises(CallCut) as e:
        ask(make_model(server.base_url, timeout_s=60, stream=False), watch=Watch(left_s=0.3, reason="time budget reached"))
    assert time.monotonic() - start < 1.2
    assert e.value.reason == "time budget reached"
    assert e.value.prompt_tokens > 0  # what the abandoned request cost, for the budget


def test_no_time_left_sends_nothing(server: ChatServer) -> None:
    with pytest.raises(CallCut):
        ask(make_model(server.base_url), watch=Watch(left_s=0.0, reason="time budget reached"))
    assert server.received == []


def test_no_retry_when_the_wait_outlasts_the_run(server: ChatServer) -> None:
    server.push(error(503, "busy", **{"retry-after": "5"}))
    with pytest.raises(ModelError) as e:
        ask(make_model(server.base_url, max_retries=3), watch=Watch(left_s=2.0))
    assert len(server.received) == 1
    assert e.value.hint is not None and "max_wall_s" in e.value.hint


def test_a_pause_during_the_wait_between_retries_cuts_the_call(server: ChatServer) -> None:
    server.push(error(503, "busy", **{"retry-after": "3"}))
    watch = Watch(reason="paused by the user")
    watch.cut_now = True
    start = time.monotonic()
    with pytest.raises(CallCut, match="paused by the user"):
        ask(make_model(server.base_url), watch=watch)
    assert time.monotonic() - start < 1.5


def test_a_refused_max_tokens_is_sent_as_max_completion_tokens(server: ChatServer) -> None:
    server.push(
        error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."),
        completion("ok"), completion("again"),
    )
    model = make_model(server.base_url, max_tokens=500)
    ask(model)
    ask(model)
    assert [("max_tokens" in r.body, r.body.get("max_completion_tokens")) for r in server.received] == [
        (True, None), (False, 500), (False, 500)
    ]


def test_a_server_that_refuses_streaming_is_asked_for_whole_answers(server: ChatServer) -> None:
    server.push(
        error(400, "stream_options: Extra inputs are not permitted"),
        error(400, "Streaming is not supported"),
        completion("whole"),
    )
    response = ask(make_model(server.base_url))
    assert response.message.content == "whole"
    sent = [(r.body.get("stream"), "stream_options" in r.body) for r in server.received]
    assert sent == [(True, True), (True, False), (None, False)]
