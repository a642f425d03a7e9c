"""The chat-completions wire format: the request body sent, and the answer read back.

Plain dicts in and out, so each server's shape is tested without the server. The body
for a given conversation is the same bytes every time (provider prompt caches hit on it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from macrohard.config import ModelSettings
from macrohard.llm.base import Message, ModelRequest, ToolCall, ToolSpec
from macrohard.models import Usage

# The usual rough rate for English text and code; used only where the endpoint sent no usage.
CHARS_PER_TOKEN = 4


def request_body(
    model: str, settings: ModelSettings, request: ModelRequest, *, stream: bool, dropped: set[str], max_tokens_as: str
) -> dict[str, Any]:
    """The JSON body of one request; parameters in `dropped` are never sent."""
    body: dict[str, Any] = {"model": model, "messages": [to_wire_message(m) for m in request.messages]}
    if request.tools:
        body["tools"] = [to_wire_tool(t) for t in request.tools]
        # llama-cpp-python's server makes no tool calls unless asked with tool_choice.
        if settings.tool_choice is not None and "tool_choice" not in dropped:
            body["tool_choice"] = settings.tool_choice
    if settings.temperature is not None and "temperature" not in dropped:
        body["temperature"] = settings.temperature
    if settings.max_tokens is not None and "max_tokens" not in dropped:
        body[max_tokens_as] = settings.max_tokens  # "max_completion_tokens" where "max_tokens" was refused
    if stream:
        body["stream"] = True
        if "stream_options" not in dropped:
            body["stream_options"] = {"include_usage": True}
    return body


def to_wire_message(m: Message) -> dict[str, Any]:
    # `reasoning` stays out: servers that show it (DeepSeek, vLLM) reject or misread it sent back.
    if m.role == "tool":
        if m.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content or ""}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            # "" rather than null: llama-cpp-python's server answers HTTP 500 to a null content.
            "content": m.content or "",
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": wire_arguments(c.arguments)}}
                for c in m.tool_calls
            ],
        }
    return {"role": m.role, "content": m.content or ""}


def wire_arguments(raw: str) -> str:
    """A call's arguments as sent back in the history: always a JSON object.

    Servers parse replayed arguments (vLLM json.loads them to render its chat template
    and fails the whole request on malformed ones), so arguments that are not a JSON
    object travel as {"unparsed_arguments": "<the text as the model wrote it>"}: valid,
    and the model still sees what it sent. Empty arguments become {}. Valid ones go
    unchanged, byte for byte, so the prompt prefix stays cacheable.
    """
    if not raw.strip():
        return "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return raw
    return json.dumps({"unparsed_arguments": raw})


def to_wire_tool(t: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}


@dataclass
class Answer:
    """One answer as read off the wire; usage None when the endpoint sent none."""

    message: Message
    usage: Usage | None
    finish_reason: str | None
    served_model: str | None


def read_completion(body: Any) -> Answer | None:
    """A whole (not streamed) chat.completion body; None when it holds no choice."""
    if not isinstance(body, Mapping):
        raise ValueError("not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    choice = choices[0]
    message = choice.get("message")
    return Answer(
        message=message_from_wire(message if isinstance(message, Mapping) else {}),
        usage=read_usage(body.get("usage")),
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        served_model=body.get("model") if isinstance(body.get("model"), str) and body.get("model") else None,
    )


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def sent_chars(body: Mapping[str, Any]) -> int:
    """How much text a request carries (messages and tool schemas), for an estimate of its tokens."""
    return len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools", [])))


def answer_chars(message: Message) -> int:
    """How much text an answer carries: content, reasoning, tool names and arguments."""
    calls = sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
    return len(message.content or "") + len(message.reasoning or "") + calls


def estimated_usage(prompt_chars: int, completion_chars: int) -> Usage:
    return Usage(
        prompt_tokens=estimate_tokens(prompt_chars), completion_tokens=estimate_tokens(completion_chars), estimated=True
    )


def read_usage(raw: Any) -> Usage | None:
    """The endpoint's token counts, or None when it sent none.

    completion_tokens always includes reasoning tokens here, as OpenAI counts them; xAI
    reports them beside completion_tokens instead (its total_tokens adds them on top).
    """
    if not isinstance(raw, Mapping):
        return None
    prompt, completion = _count(raw.get("prompt_tokens")), _count(raw.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    details_in = raw.get("prompt_tokens_details") or {}
    details_out = raw.get("completion_tokens_details") or {}
    cached = (
        _count(details_in.get("cached_tokens") if isinstance(details_in, Mapping) else None)
        or _count(raw.get("prompt_cache_hit_tokens"))  # DeepSeek
        or _count(raw.get("cached_prompt_text_tokens"))  # xAI's own API
        or 0
    )
    reasoning = (
        _count(details_out.get("reasoning_tokens") if isinstance(details_out, Mapping) else None)
        or _count(raw.get("reasoning_tokens"))  # xAI's own API
        or 0
    )
    total = _count(raw.get("total_tokens"))
    if reasoning and (total == prompt + completion + reasoning or reasoning > completion):
        completion += reasoning
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=min(cached, prompt),
                 reasoning_tokens=reasoning)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def reasoning_of(m: Mapping[str, Any]) -> str | None:
    """Reasoning text where servers put it: `reasoning_content` (vLLM, DeepSeek, llama.cpp) or `reasoning`."""
    for key in ("reasoning_content", "reasoning"):
        value = m.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def message_from_wire(m: Mapping[str, Any]) -> Message:
    calls: list[ToolCall] = []
    for i, c in enumerate(m.get("tool_calls") or []):
        fn = c.get("function") or c.get("custom")
        if not isinstance(fn, Mapping):
            continue
        raw = fn.get("arguments", fn.get("input"))
        # Some servers send an object instead of a JSON string; keep it as text.
        arguments = raw if isinstance(raw, str) else ("" if raw is None else json.dumps(raw))
        calls.append(ToolCall(id=c.get("id") or f"call_{i}", name=fn.get("name") or "", arguments=arguments))
    content = m.get("content")
    return Message(
        role="assistant", content=content if isinstance(content, str) else None, tool_calls=calls, reasoning=reasoning_of(m)
    )


class StreamAssembler:
    """Builds one answer from streamed chunks: text, reasoning, and tool calls by index."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.served_model: str | None = None
        self.chars = 0
        self.chunks = 0

    def add(self, chunk: Mapping[str, Any]) -> None:
        self.chunks += 1
        self.served_model = chunk.get("model") or self.served_model
        self.usage = read_usage(chunk.get("usage")) or self.usage  # the last chunk, with include_usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.content.append(text)
                self.chars += len(text)
            thought = reasoning_of(delta)
            if thought:
                self.reasoning.append(thought)
                self.chars += len(thought)
            for call in delta.get("tool_calls") or []:
                self._add_call(call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def _add_call(self, delta: Mapping[str, Any]) -> None:
        index = delta.get("index")
        if not isinstance(index, int):
            # Servers that send each call whole leave out the index: a new id is a new call.
            known = [i for i, c in self.calls.items() if delta.get("id") and c["id"] == delta.get("id")]
            index = known[0] if known else len(self.calls)
        call = self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
        call["id"] = call["id"] or delta.get("id")
        fn = delta.get("function") or {}
        name, args = fn.get("name"), fn.get("arguments")
        if isinstance(name, str) and not call["name"]:
            call["name"] = name
            self.chars += len(name)
        if args is not None:
            piece = args if isinstance(args, str) else json.dumps(args)
            call["arguments"] += piece
            self.chars += len(piece)

    def answer(self) -> Answer:
        return Answer(self.message(), self.usage, self.finish_reason, self.served_model)

    def message(self) -> Message:
        calls = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(self.calls.items())
        ]
        return Message(
            role="assistant",
            content="".join(self.content) if self.content else None,
            tool_calls=calls,
            reasoning="".join(self.reasoning) or None,
        )
