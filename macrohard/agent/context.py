"""Keeping a session's requests inside the model's context window, by observation masking.

The conversation is never cut: old tool results, and the long texts in the model's own
earlier calls (a write_file's content, an edit's old and new), are replaced by short
stubs that say what was there. The system prompt, the task prompt and the most recent
steps stay whole. Masking happens in steps: once a request's estimate passes a high-water
mark, old messages are masked down to a low-water mark, and until the next such step
every request only appends to the previous one, so its prefix stays byte-stable and a
provider's prompt cache keeps hitting.

Sizes are estimated at about four characters a token, tool schemas included; when the
model says a request did not fit anyway, the window is taken to be smaller than that
request and masking goes deeper (see `after_overflow`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from macrohard.llm.base import Message, ToolCall, ToolSpec

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # a message's role and separators
HIGH_WATER = 0.8  # of the room for the prompt: a request above it starts a masking step
LOW_WATER = 0.5  # and masking goes down to this
KEEP_RECENT = 3  # the model's last answers, with their results, stay whole while they can
LEVELS = tuple(range(KEEP_RECENT, -1, -1))  # how many stay whole when more must go
MASK_VALUE_CHARS = 200  # an argument's text longer than this is stubbed in an old call
MIN_MASK_CHARS = 400  # a message that would shrink by less is left as it is
LONG_REPLY_CHARS = 4000  # an old reply's own text longer than this is masked too
OVERFLOW_SHRINK = 0.8  # after an overflow, the room is taken to be this much of the failed request


def estimate_text(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_message(message: Message) -> int:
    chars = len(message.content or "") + sum(len(c.name) + len(c.arguments) + len(c.id) for c in message.tool_calls)
    return MESSAGE_TOKENS + math.ceil(chars / CHARS_PER_TOKEN)


def estimate_tools(tools: Sequence[ToolSpec]) -> int:
    return estimate_text(json.dumps([t.model_dump() for t in tools])) if tools else 0


def estimate(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> int:
    """A request's size in tokens, about: its messages and its tool schemas."""
    return sum(estimate_message(m) for m in messages) + estimate_tools(tools)


class Masked(BaseModel):
    """One message replaced by its stub, as the transcript records it."""

    index: int  # in the session's conversation (0 is the system prompt)
    kind: Literal["tool_result", "call_arguments", "reply_text"]
    tool: str
    chars: int  # how many characters the stub took the place of


class Compaction(BaseModel):
    reason: str
    before: int  # the request's estimate in tokens, before and after
    after: int
    limit: int  # the room for the prompt it had to fit
    kept_recent: int  # how many of the model's last answers stayed whole
    masked: list[Masked]


class ContextWindow:
    """Which messages of one session are sent as stubs; grows only by masking steps."""

    def __init__(self, window: int, max_tokens: int | None) -> None:
        self.window = window
        # Room for the answer: what the model may write is not room for the prompt.
        answer = max_tokens if max_tokens is not None else min(4096, window // 4)
        self.limit = max(window - answer, window // 4)
        self._stubs: dict[int, Message] = {}

    def view(self, messages: Sequence[Message]) -> list[Message]:
        """The conversation as it is sent: masked messages replaced by their stubs."""
        return [self._stubs.get(i, m) for i, m in enumerate(messages)]

    def estimate(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> int:
        return estimate(self.view(messages), tools)

    def prepare(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Compaction | None:
        """Before a request: a masking step if it passed the high-water mark, else nothing."""
        if self.estimate(messages, tools) <= HIGH_WATER * self.limit:
            return None
        return self._compact(messages, tools, "the request passed the high-water mark")

    def after_overflow(self, messages: Sequence[Message], tools: Sequence[ToolSpec], sent: int) -> Compaction | None:
        """The model said a request of `sent` tokens (by our estimate) did not fit: mask deeper.

        The estimate was wrong for this model (a denser tokenizer, a smaller window than
        configured), so the room is taken to be smaller than that request from now on.
        """
        self.limit = min(self.limit, max(1, int(sent * OVERFLOW_SHRINK)))
        return self._compact(messages, tools, "the model said the request did not fit its context window")

    def _compact(self, messages: Sequence[Message], tools: Sequence[ToolSpec], reason: str) -> Compaction | None:
        before = now = self.estimate(messages, tools)
        target = int(LOW_WATER * self.limit)
        masked: list[Masked] = []
        kept = LEVELS[0]
        for kept in LEVELS:
            for index in self._candidates(messages, kept):
                if now <= target:
                    break
                stub, record = _stub(messages, index)
                if stub is None or record is None:
                    continue
                now += estimate_message(stub) - estimate_message(messages[index])
                self._stubs[index] = stub
                masked.append(record)
            # Fewer recent steps stay whole until the low-water mark is reached (or else the
            # next step would mask again, and the prefix would change at every step); the
            # latest step is masked only when the request would not fit at all.
            if now <= target or (kept == 1 and now <= self.limit):
                break
        if not masked:
            return None
        return Compaction(reason=reason, before=before, after=now, limit=self.limit, kept_recent=kept, masked=masked)

    def _candidates(self, messages: Sequence[Message], keep: int) -> list[int]:
        """Indexes that may be masked, oldest first: after the task prompt, before the recent steps."""
        answers = [i for i, m in enumerate(messages) if m.role == "assistant"]
        if keep == 0:
            end = len(messages)
        else:
            end = answers[-keep] if len(answers) >= keep else (answers[0] if answers else len(messages))
        return [i for i in range(2, end) if i not in self._stubs and messages[i].role in ("tool", "assistant")]


def _stub(messages: Sequence[Message], index: int) -> tuple[Message | None, Masked | None]:
    """The short stand-in for one message, and its record; (None, None) if not worth it."""
    message = messages[index]
    if message.role == "tool":
        text = message.content or ""
        if len(text) < MIN_MASK_CHARS:
            return None, None
        call = _call_for(messages[:index], message.tool_call_id)
        name = call.name if call else "a tool"
        what = f"{name}({_brief(call)})" if call else name
        stub = f"[masked to save room: the result of {what}, {len(text)} characters; call it again if you need it]"
        return (
            message.model_copy(update={"content": stub}),
            Masked(index=index, kind="tool_result", tool=name, chars=len(text)),
        )
    if message.role == "assistant":
        calls, saved = [], 0
        for call in message.tool_calls:
            masked, chars = _masked_arguments(call.arguments)
            calls.append(call.model_copy(update={"arguments": masked}) if chars else call)
            saved += chars
        content = message.content
        if content is not None and len(content) > LONG_REPLY_CHARS:
            # A long reply in prose is usually code written out instead of called: as old as a result.
            content = f"[masked to save room: {len(content)} characters of your earlier reply]"
            saved += len(message.content or "") - len(content)
        if saved < MIN_MASK_CHARS:
            return None, None
        tools = ",".join(sorted({c.name for c in message.tool_calls})) or "reply"
        return (
            message.model_copy(update={"tool_calls": calls, "content": content}),
            Masked(index=index, kind="call_arguments" if message.tool_calls else "reply_text", tool=tools, chars=saved),
        )
    return None, None


def _masked_arguments(arguments: str) -> tuple[str, int]:
    """Arguments with each long text replaced by a note under a key of its own, and the characters saved.

    The key changes (content -> content_masked) so that a model copying its own old call
    gets a missing-argument error instead of writing the note into a file.
    """
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError):  # malformed, or nested past Python's stack
        return arguments, 0
    if not isinstance(parsed, dict):
        return arguments, 0
    out: dict[str, Any] = {}
    for key, value in parsed.items():
        if isinstance(value, str) and len(value) > MASK_VALUE_CHARS:
            out[f"{key}_masked"] = f"{len(value)} characters, not repeated to save room"
        else:
            out[key] = value
    text = json.dumps(out, ensure_ascii=False)
    saved = len(arguments) - len(text)
    return (text, saved) if saved > 0 and out != parsed else (arguments, 0)


def _call_for(earlier: Sequence[Message], call_id: str | None) -> ToolCall | None:
    for message in reversed(earlier):
        for call in message.tool_calls:
            if call.id == call_id:
                return call
    return None


def _brief(call: ToolCall) -> str:
    try:
        args = json.loads(call.arguments)
    except (ValueError, RecursionError):  # malformed, or nested past Python's stack
        return ""
    if not isinstance(args, dict):
        return ""
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items() if not isinstance(v, (dict, list)))
    return shown if len(shown) <= 120 else shown[:117] + "..."
