"""What the adapter tests share: a model pointed at a test server, and one question to it."""

from __future__ import annotations

import time
from typing import Any

from macrohard.config import ModelSettings
from macrohard.llm.base import CallWatch, Message, ModelRequest, ModelResponse, ToolSpec
from macrohard.llm.openai import OpenAIChatModel

KEY = "sk-test-SECRET-0123456789"
ENV = {"TEST_LLM_KEY": KEY}

READ_FILE = ToolSpec(
    name="read_file",
    description="Read a file in the worktree.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)


def make_model(base_url: str | None, *, max_retries: int = 2, **kw: Any) -> OpenAIChatModel:
    settings = ModelSettings(
        model="test-model", base_url=base_url, api_key_env="TEST_LLM_KEY", max_retries=max_retries, **kw
    )
    return OpenAIChatModel(settings, environ=ENV)


def request(text: str = "hello", tools: list[ToolSpec] | None = None) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], tools=tools or [], role="engineer", task="T-1")


def ask(
    model: OpenAIChatModel, text: str = "hello", tools: list[ToolSpec] | None = None, watch: CallWatch | None = None
) -> ModelResponse:
    return model.complete(request(text, tools), watch)


def tool_call(call_id: str, arguments: str, name: str = "read_file") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class Watch:
    """A CallWatch that records what it is told and cuts when asked to, or when its time is up."""

    def __init__(self, *, cut_at_chars: int | None = None, left_s: float | None = None, reason: str = "paused") -> None:
        self.told: list[int] = []
        self.cut_at_chars = cut_at_chars
        self.ends = None if left_s is None else time.monotonic() + left_s
        self.reason = reason
        self.cut_now = False  # set from a test to cut at the next look

    def streamed(self, chars: int) -> None:
        self.told.append(chars)

    def cut(self) -> str | None:
        if self.cut_now or (self.cut_at_chars is not None and self.told and self.told[-1] >= self.cut_at_chars):
            return self.reason
        left = self.timeout_s()
        return self.reason if left is not None and left <= 0 else None

    def timeout_s(self) -> float | None:
        return None if self.ends is None else self.ends - time.monotonic()
