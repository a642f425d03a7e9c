"""The OpenAI-compatible endpoint adapter: the one module that imports the openai SDK."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import openai

from macrohard.config import ModelSettings
from macrohard.errors import ConfigError, ModelError
from macrohard.llm.base import CallWatch, Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from macrohard.models import Usage

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the SDK insists on one.
PLACEHOLDER_KEY = "macrohard-no-key"


class OpenAIChatModel:
    """A `ChatModel` backed by any OpenAI-compatible chat-completions endpoint."""

    def __init__(self, settings: ModelSettings, *, environ: Mapping[str, str] | None = None) -> None:
        if not settings.model:
            raise ConfigError(
                "no model configured",
                "set [model] model in macrohard.toml or MACROHARD_MODEL__MODEL",
            )
        env = os.environ if environ is None else environ
        key = env.get(settings.api_key_env) or None
        if key is None and settings.base_url is None:
            raise ConfigError(
                f"no API key for {OPENAI_BASE_URL}: ${settings.api_key_env} is not set",
                f"export {settings.api_key_env}=..., or set [model] base_url for a local server",
            )
        self.settings = settings
        self.model: str = settings.model
        # Explicit, so the SDK's own OPENAI_BASE_URL lookup cannot redirect a request
        # (and its key) somewhere the settings did not name.
        self.base_url = (settings.base_url or OPENAI_BASE_URL).rstrip("/")
        self._key = key or PLACEHOLDER_KEY
        self._client = openai.OpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )

    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse:
        """Send one chat-completions request; the SDK retries transient failures."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [_to_openai_message(m) for m in request.messages],
        }
        if request.tools:
            kwargs["tools"] = [_to_openai_tool(t) for t in request.tools]
        if self.settings.temperature is not None:
            kwargs["temperature"] = self.settings.temperature
        start = time.monotonic()
        try:
            completion = self._client.chat.completions.create(**kwargs)
        except openai.OpenAIError as e:
            raise self._model_error(e) from None
        latency = time.monotonic() - start
        if not completion.choices:
            raise ModelError(
                f"model endpoint {self.base_url} answered with no choices",
                "the server is not speaking the chat-completions protocol as expected",
            )
        usage = completion.usage
        return ModelResponse(
            message=_from_openai_message(completion.choices[0].message),
            usage=Usage(
                prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
            model=self.model,
            served_model=completion.model or None,
            latency_s=latency,
        )

    def close(self) -> None:
        """Release the pooled HTTP connections."""
        self._client.close()

    def _model_error(self, e: openai.OpenAIError) -> ModelError:
        """One line naming endpoint and status, with what to do; never the key."""
        where = f"model endpoint {self.base_url}"
        retries = self.settings.max_retries
        var = self.settings.api_key_env
        if isinstance(e, openai.APITimeoutError):
            msg = f"{where} did not answer within {self.settings.timeout_s:g}s ({retries} retries)"
            hint = "raise [model] timeout_s or check the server's load"
        elif isinstance(e, openai.APIConnectionError):
            msg = f"cannot connect to {where} ({retries} retries)"
            hint = f"is the server at {self.base_url} running?"
        elif isinstance(e, openai.APIStatusError):
            status = e.status_code
            msg = f"{where} answered HTTP {status}: {_detail(e)}"
            if status == 401:
                hint = f"check the API key in ${var}"
            elif status == 403:
                hint = f"the key in ${var} may not have access to model {self.model!r}"
            elif status == 404:
                hint = f"check the model name {self.model!r} and base_url"
            elif status == 429:
                hint = f"rate limited after {retries} retries: try later or lower max_parallel"
            elif status >= 500 or status in (408, 409):
                hint = f"the server kept failing after {retries} retries: try later"
            else:
                hint = "the endpoint rejected the request: check that the model supports tool calls"
        elif isinstance(e, openai.APIResponseValidationError):
            msg = f"{where} sent a response that is not a chat completion"
            hint = "check that base_url points at an OpenAI-compatible /v1 endpoint"
        else:
            msg = f"{where} failed: {type(e).__name__}: {e}"
            hint = None
        return ModelError(self._scrub(msg), self._scrub(hint) if hint else None)

    def _scrub(self, text: str) -> str:
        # Servers echo keys back in 401 bodies; keep ours out of every message.
        return text.replace(self._key, "***") if self._key else text


def _detail(e: openai.APIStatusError) -> str:
    """The server's own error message, cut to one short line."""
    body = e.body
    text: Any = None
    if isinstance(body, dict):
        err = body.get("error", body)
        text = err.get("message") if isinstance(err, dict) else err
    text = str(text or e.message or "")
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."


def _to_openai_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        if m.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content or ""}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            "content": m.content,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ],
        }
    # Some local servers reject a null content outside tool calls.
    return {"role": m.role, "content": m.content or ""}


def _to_openai_tool(t: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
    }


def _from_openai_message(m: Any) -> Message:
    calls: list[ToolCall] = []
    for i, c in enumerate(m.tool_calls or []):
        fn = getattr(c, "function", None)
        custom = getattr(c, "custom", None)
        if fn is not None:
            name, raw = fn.name, fn.arguments
        elif custom is not None:
            name, raw = custom.name, custom.input
        else:
            continue
        # Some servers send an object instead of a JSON string; keep it as text.
        arguments = raw if isinstance(raw, str) else ("" if raw is None else json.dumps(raw))
        calls.append(ToolCall(id=c.id or f"call_{i}", name=name or "", arguments=arguments))
    return Message(role="assistant", content=m.content, tool_calls=calls)
