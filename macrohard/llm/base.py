"""The model layer's protocol: messages and tool schemas in, an assistant message out."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from macrohard.models import Usage


class ToolCall(BaseModel):
    id: str
    name: str
    # Raw JSON text as the model sent it: it may be malformed, and the agent loop
    # answers that with an error message rather than crashing.
    arguments: str
    # True when the agent loop recovered this call from the answer's text (bare JSON,
    # a fenced block, <tool_call> tags) because the endpoint sent no tool_calls.
    recovered: bool = False


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    # What a reasoning model thought before answering, where the endpoint shows it
    # (`reasoning_content` or `reasoning`): kept for the transcript, never sent back.
    reasoning: str | None = None


class ToolSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


class ModelRequest(BaseModel):
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    # Who is asking and for what: the scripted model replays per role and task,
    # and the transcript records both.
    role: str
    task: str
    # Which session of this role on this task (a ticket's attempt, a re-plan after
    # feedback): lets a scripted model find its place without remembering it.
    attempt: int = 1


class ModelResponse(BaseModel):
    message: Message  # role == "assistant"
    usage: Usage
    model: str  # the model as configured: what prices and budgets are keyed by
    latency_s: float
    served_model: str | None = None  # as the endpoint named it, e.g. with a date suffix
    # Why the answer ended, as the endpoint said: "stop", "tool_calls", "length" (cut at
    # the output limit), "content_filter", ...; None when it did not say.
    finish_reason: str | None = None


class CallWatch(Protocol):
    """Watches one model call: told how a streamed answer grows, asked whether to cut it.

    The agent loop passes one to `complete`; an adapter that streams calls `streamed`
    as the answer arrives and stops reading (closing the request) once `cut` returns a
    reason, such as a pause asked by the user or a budget that ran out meanwhile.
    """

    def streamed(self, chars: int) -> None:
        """The answer so far is this many characters long (text and tool arguments)."""
        ...

    def cut(self) -> str | None:
        """Why the call should stop now, or None to let it go on."""
        ...

    def timeout_s(self) -> float | None:
        """The longest this call may still take (what is left of a wall-time budget), or None."""
        ...


class ChatModel(Protocol):
    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse: ...
