"""The full prompt behind a model call, rebuilt from the transcript.

A model.request records only the messages that are new since the previous request
of the same agent; the answers in between are in the model.response events. Walking
one role's events for one task in order and concatenating both gives back exactly
what the model was sent. An agent starts over (a new attempt) at step 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from macrohard.transcript.log import Event


class Argument(BaseModel):
    name: str
    value: str  # strings as they are, so file contents keep their lines; anything else as JSON


class ToolCallView(BaseModel):
    id: str
    name: str
    raw: str
    arguments: list[Argument] | None  # None: the model sent something that is not a JSON object


class PromptMessage(BaseModel):
    role: str
    content: str | None = None
    tool_calls: list[ToolCallView] = Field(default_factory=list)
    tool_call_id: str | None = None
    source: str  # id of the event that recorded it


class Conversation(BaseModel):
    messages: list[PromptMessage]
    request_id: str | None  # the model.request that sent them
    expected: int | None  # how many messages that request says it sent in all

    @property
    def complete(self) -> bool:
        return self.expected is None or self.expected == len(self.messages)


def tool_call_view(call: Any) -> ToolCallView:
    if not isinstance(call, dict):
        return ToolCallView(id="", name="?", raw=str(call), arguments=None)
    raw = call.get("arguments")
    raw_text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    return ToolCallView(
        id=str(call.get("id") or ""), name=str(call.get("name") or "?"), raw=raw_text, arguments=arguments(raw_text)
    )


def arguments(raw: str) -> list[Argument] | None:
    try:
        parsed = json.loads(raw or "{}")
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(parsed, dict):
        return None
    return [
        Argument(name=str(k), value=v if isinstance(v, str) else json.dumps(v, indent=2, ensure_ascii=False))
        for k, v in parsed.items()
    ]


def message_view(message: Any, source: str) -> PromptMessage:
    if not isinstance(message, dict):
        return PromptMessage(role="?", content=str(message), source=source)
    content = message.get("content")
    calls = message.get("tool_calls")
    return PromptMessage(
        role=str(message.get("role") or "?"),
        content=content if isinstance(content, str) or content is None else json.dumps(content, indent=2, ensure_ascii=False),
        tool_calls=[tool_call_view(c) for c in calls] if isinstance(calls, list) else [],
        tool_call_id=_opt(message.get("tool_call_id")),
        source=source,
    )


def _same_agent(a: Event, b: Event) -> bool:
    return a.role == b.role and a.ticket == b.ticket and a.data.get("task") == b.data.get("task")


def conversation(events: Sequence[Event], target: Event) -> Conversation | None:
    """What the model had been sent when it gave `target` (a model.response), or what `target`
    (a model.request) sent; None for other events."""
    if target.kind not in ("model.request", "model.response"):
        return None
    messages: list[PromptMessage] = []
    request: Event | None = None
    for event in events:
        # A response's own answer is shown apart from the prompt; a request's messages are the prompt.
        if event.seq > target.seq or (event.seq == target.seq and target.kind == "model.response"):
            break
        if not _same_agent(event, target):
            continue
        if event.kind == "model.request":
            if event.data.get("step") == 1:
                messages = []  # a new attempt starts a new conversation
            sent = event.data.get("messages")
            messages.extend(message_view(m, event.id) for m in (sent if isinstance(sent, list) else []))
            request = event
        elif event.kind == "model.response":
            messages.append(message_view(event.data.get("message"), event.id))
    expected = request.data.get("n_messages") if request is not None else None
    return Conversation(
        messages=messages, request_id=request.id if request else None, expected=expected if isinstance(expected, int) else None
    )


def response_to(events: Sequence[Event], request: Event) -> Event | None:
    """The model.response that answered a model.request."""
    for event in events:
        if event.seq > request.seq and event.kind == "model.response" and _same_agent(event, request):
            return event if event.data.get("step") == request.data.get("step") else None
    return None


def caller_of(events: Sequence[Event], tool_event: Event) -> Event | None:
    """The model.response whose tool call a tool.call event answers."""
    call_id = tool_event.data.get("call_id")
    for event in reversed(events):
        if event.seq >= tool_event.seq or event.kind != "model.response" or not _same_agent(event, tool_event):
            continue
        if any(c.get("id") == call_id for c in _calls(event)):
            return event
    return None


def results_of(events: Sequence[Event], response: Event) -> list[Event]:
    """The tool.call events that carried out a model.response's tool calls, in order."""
    wanted = {c.get("id") for c in _calls(response)}
    found: list[Event] = []
    for event in events:
        if event.seq <= response.seq or not _same_agent(event, response):
            continue
        if event.kind == "model.request":
            break  # the next step: anything later answers other calls
        if event.kind == "tool.call" and event.data.get("call_id") in wanted:
            found.append(event)
    return found


def _calls(response: Event) -> list[dict[str, Any]]:
    message = response.data.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
