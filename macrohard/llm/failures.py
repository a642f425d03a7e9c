"""What an endpoint's refusal means: retry it, compact the conversation, or tell the user.

Pure functions over a status, the error body and its headers, so each server's habit is
one line here and tested without that server. `OpenAIChatModel` acts on the verdicts.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The request did not fit the model's window, in the words of the servers we know:
OVERFLOW = re.compile(
    "|".join(
        [
            r"context_length_exceeded",  # OpenAI's and Groq's error code
            r"maximum context length",  # OpenAI, vLLM, llama-cpp-python: "This model's maximum context length is ..."
            r"exceed_context_size_error",  # llama.cpp's server (type), "the request exceeds the available context size"
            r"exceeds? the (available )?context (size|length|window)",  # llama.cpp, Ollama "input length exceeds the context length"
            r"exceed(s|ed)? (the )?context window",  # llama-cpp-python "Requested tokens (N) exceed context window of M"
            r"longer than the maximum model length",  # vLLM "The decoder prompt (length N) is longer than ..."
            r"too long and exceeds limit",  # vLLM "Input prompt (N tokens) is too long and exceeds limit of M"
            r"reduce the length of the messages",
            r"max_tokens must be at least 1, got -",  # older vLLM when the prompt alone fills the window
            r"prompt is too long",  # Anthropic-style gateways
            r"context length exceeded|context window exceeded",
            r"request too large",  # OpenAI's 429 "Request too large for gpt-4o ... tokens per min"
        ]
    ),
    re.IGNORECASE,
)
# A 500 that says the request itself was wrong (llama-cpp-python answers a pydantic
# validation error with 500): sending it again cannot help.
INVALID = re.compile(
    r"validation error|invalid|not supported|unsupported|bad request|unrecognized|unexpected keyword|"
    r"extra inputs are not permitted|field required",
    re.IGNORECASE,
)
# Rate limits that waiting does not lift: the account is out of quota.
NO_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota", re.IGNORECASE)
# Request parameters a server may refuse, which `drop` leaves out.
DROPPABLE = ("temperature", "tool_choice", "stream_options", "max_tokens")

# The SDK's own pacing: 0.5 s doubling to 8 s; a server asking for longer than this
# is not waited for (a quota that resets in an hour fails the call, with the wait named).
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class Refusal:
    """An HTTP error answer (or an error event inside a stream), read once."""

    status: int | None  # None: an error event in a stream that named no code
    detail: str  # the server's own message, on one short line
    text: str  # message, type and code together: what the patterns look at
    retry_after_s: float | None = None

    @property
    def overflow(self) -> bool:
        if self.status == 413:
            return True
        if self.status == 429:
            # A rate limit is not an overflow; a request larger than any limit is.
            return bool(re.search(r"too large", self.text, re.IGNORECASE))
        return bool(OVERFLOW.search(self.text))

    @property
    def transient(self) -> bool:
        """Worth sending again unchanged: rate limits, overload, a server-side failure."""
        if self.overflow:
            return False
        if self.status == 429:
            return not NO_QUOTA.search(self.text)
        if self.status in (408, 409, 502, 503, 504):
            return True
        if self.status is not None and self.status >= 500:
            return not INVALID.search(self.text)
        return False

    def names(self, parameter: str) -> bool:
        """The refusal is about this request parameter (an invalid request, not an overflow)."""
        return not self.transient and not self.overflow and parameter in self.text.lower()


def read_refusal(status: int | None, body: Any, headers: Mapping[str, str] | None, fallback: str) -> Refusal:
    """A refusal from what the SDK kept of the answer: its status, JSON body and headers."""
    message: Any = None
    parts: list[str] = []
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            message = err.get("message") or err.get("detail")
            parts += [str(err.get(k)) for k in ("type", "code", "param") if err.get(k) is not None]
        else:
            message = err
        if message is None:
            message = body.get("detail") or body.get("message")
    elif isinstance(body, str):
        message = body
    line = " ".join(str(message or fallback or "").split())
    detail = line if len(line) <= 200 else line[:197] + "..."
    return Refusal(status, detail, " ".join([line, *parts]), retry_after(headers or {}))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait (retry-after-ms, retry-after in seconds or as a date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(float(lower["retry-after-ms"]) / 1000, 0.0)
        if "retry-after" in lower:
            value = lower["retry-after"].strip()
            try:
                return max(float(value), 0.0)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                return max(when.timestamp() - time.time(), 0.0)
    except (ValueError, TypeError, OverflowError):
        return None
    return None


def backoff_s(retry: int, jitter: float) -> float:
    """The pause before retry number `retry` (0-based); `jitter` in [0, 1) takes up to 25 % off."""
    return min(FIRST_BACKOFF_S * 2**retry, MAX_BACKOFF_S) * (1 - 0.25 * jitter)


def rejection_hint(refusal: Refusal, model: str, key_var: str) -> str:
    """What to do about a refusal that is not retried."""
    status, low = refusal.status, refusal.text.lower()
    if status == 401:
        return f"check the API key in ${key_var}"
    if status == 403:
        return f"the key in ${key_var} may not have access to model {model!r}"
    if status == 404:
        return f"check the model name {model!r} and base_url"
    if status == 429:
        return "the account is out of quota: check its plan and billing"
    for parameter in DROPPABLE:
        if parameter in low:
            return f'the endpoint refuses {parameter!r}: add it to drop = ["{parameter}"] under [model] or [roles.<role>]'
    if "tool" in low or "function" in low:
        return "the model or server may not support tool calls (vLLM needs --enable-auto-tool-choice and a --tool-call-parser)"
    if status is not None and status >= 500:
        return "the server says the request is invalid, so it was not retried; its message says why"
    return "the endpoint rejected the request as invalid; its message says why"
