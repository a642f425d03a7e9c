"""The OpenAI-compatible endpoint adapter: the one module that imports the openai SDK.

Retries are ours, not the SDK's (it runs with max_retries=0), so that only transient
failures are sent again (llm/failures.py says which), never past the run's wall
budget, and never while an abandoned request may still be running on the server:

- a streamed request is abandoned by closing its connection, which llama.cpp's and
  vLLM's servers notice and stop generating for, so it may be sent again;
- a request that was not streamed and timed out is not sent again: a single-worker
  server (llama.cpp's is single-threaded by default) would still be busy with it and
  the retry would queue behind it. The error names the timeout and what to set instead.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import openai

from macrohard.config import ModelSettings
from macrohard.errors import CallCut, ConfigError, ContextOverflowError, ModelError
from macrohard.llm import failures, wire
from macrohard.llm.base import CallWatch, ModelRequest, ModelResponse
from macrohard.llm.failures import Refusal
from macrohard.llm.streaming import Deadline, EmptyStream, StreamTimeout, read_stream

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the SDK insists on one.
PLACEHOLDER_KEY = "macrohard-no-key"
# How often a wait between retries looks at the watch.
WAIT_SLICE_S = 0.2


class _Retry(Exception):
    """An attempt failed in a way worth another; message and hint of the error if none is left."""

    def __init__(self, message: str, hint: str, after_s: float | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.after_s = message, hint, after_s

    def error(self, retries: int) -> ModelError:
        return ModelError(f"{self.message} (after {retries} retries)" if retries else self.message, self.hint)


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
        self._where = f"model endpoint {self.base_url}"
        self._key = key or PLACEHOLDER_KEY
        self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=settings.timeout_s, max_retries=0)
        # What this endpoint refused once, learned and not sent again by this object.
        self._refused: set[str] = set()
        self._max_tokens_as = "max_tokens"

    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse:
        """Send one chat-completions request, retrying only what is worth retrying."""
        started = time.monotonic()
        retries = 0
        unstreamed = False  # asked again without streaming, to read why a stream came back empty
        while True:
            stream = self.settings.stream and "stream" not in self._refused and not unstreamed
            body = wire.request_body(
                self.model, self.settings, request, stream=stream,
                dropped=set(self.settings.drop) | self._refused, max_tokens_as=self._max_tokens_as,
            )
            try:
                return self._attempt(body, stream, self._deadline(watch, body), watch, started)
            except EmptyStream:
                unstreamed = True
                continue
            except openai.APIStatusError as e:
                refusal = failures.read_refusal(e.status_code, e.body, e.response.headers, e.message)
                if not refusal.transient and self._learn(refusal, body):
                    continue  # the same request without what the endpoint refused
                outcome = self._judge(refusal)
                if isinstance(outcome, ModelError):
                    raise outcome from None
                retry = outcome
            except _Retry as r:
                retry = r
            if retries >= self.settings.max_retries:
                raise retry.error(retries) from None
            self._wait(retry, retries, watch)
            retries += 1

    def close(self) -> None:
        """Release the pooled HTTP connections."""
        self._client.close()

    def _deadline(self, watch: CallWatch | None, body: dict[str, Any]) -> Deadline:
        """This attempt's time: timeout_s, or what is left of the run's wall budget if less."""
        left = watch.timeout_s() if watch is not None else None
        if left is not None and left <= 0:
            raise CallCut((watch.cut() if watch else None) or "the run's time budget is used up")
        by_budget = left is not None and left < self.settings.timeout_s
        seconds = left if by_budget and left is not None else self.settings.timeout_s
        return Deadline(seconds, by_budget=by_budget, prompt_chars=wire.sent_chars(body))

    def _attempt(
        self, body: dict[str, Any], stream: bool, deadline: Deadline, watch: CallWatch | None, started: float
    ) -> ModelResponse:
        try:
            raw = self._client.chat.completions.with_raw_response.create(**body, timeout=deadline.seconds)
            http = raw.http_response
            if stream and "event-stream" in http.headers.get("content-type", ""):
                answer = read_stream(raw.parse(), http, deadline, watch, broken=(openai.APIConnectionError,))
            else:
                # Not streamed, or a server that answered a stream request with plain JSON.
                answer = wire.read_completion(json.loads(http.read()))
        except StreamTimeout as e:
            raise self._timed_out(deadline, stream, watch, e.chars) from None
        except openai.APITimeoutError:
            raise self._timed_out(deadline, stream, watch) from None
        except openai.APIConnectionError:
            if deadline.expired():
                raise self._timed_out(deadline, stream, watch) from None
            raise _Retry(f"cannot connect to {self._where}", f"is the server at {self.base_url} running?") from None
        except openai.APIStatusError:
            raise
        except openai.APIError as e:  # an error event inside a stream
            code = e.body.get("code") if isinstance(e.body, Mapping) else None
            raise self._judge(failures.read_refusal(code if isinstance(code, int) else None, e.body, None, e.message)) from None
        except ValueError:
            raise ModelError(
                f"{self._where} sent a response that is not a chat completion",
                "check that base_url points at an OpenAI-compatible /v1 endpoint",
            ) from None
        if answer is None:
            raise ModelError(f"{self._where} answered with no choices",
                             "the server is not speaking the chat-completions protocol as expected")
        usage = answer.usage
        if usage is None:  # the endpoint sent none: estimate it, and say so
            usage = wire.estimated_usage(deadline.prompt_chars, wire.answer_chars(answer.message))
        return ModelResponse(message=answer.message, usage=usage, model=self.model, served_model=answer.served_model,
                             latency_s=time.monotonic() - started, finish_reason=answer.finish_reason)

    def _timed_out(self, deadline: Deadline, stream: bool, watch: CallWatch | None, chars: int = 0) -> Exception:
        if deadline.by_budget:
            reason = (watch.cut() if watch else None) or "the run's time budget ran out during a model call"
            return CallCut(reason, prompt_tokens=wire.estimate_tokens(deadline.prompt_chars),
                           completion_tokens=wire.estimate_tokens(chars))
        msg = f"{self._where} did not answer within {self.settings.timeout_s:g}s"
        if stream:  # its connection is closed, so the server stopped: worth another try
            return _Retry(msg, "raise [model] timeout_s or lower max_tokens, or check the server's load")
        return ModelError(
            f"{msg}; not retried, as the server may still be working on it",
            "raise [model] timeout_s, lower [model] max_tokens, or set stream = true so a long answer can be stopped",
        )

    def _learn(self, refusal: Refusal, body: dict[str, Any]) -> bool:
        """Adapt to a refusal the request can do without; True when there is something new to try."""
        if "stream_options" in body and refusal.names("stream_options"):
            self._refused.add("stream_options")
        elif body.get("stream") and refusal.names("stream"):
            self._refused.add("stream")  # the endpoint does not stream: ask for whole answers
        elif "max_tokens" in body and refusal.names("max_completion_tokens"):
            self._max_tokens_as = "max_completion_tokens"  # OpenAI's o-series and newer models
        else:
            return False
        return True

    def _judge(self, refusal: Refusal) -> ModelError | _Retry:
        """A transient refusal to retry, or the error to raise."""
        msg = self._scrub(f"{self._where} answered {_status(refusal)}: {refusal.detail}")
        if refusal.overflow:
            return ContextOverflowError(msg, f"the request does not fit the model's window "
                                        f"(context_window = {self.settings.context_window}): shorten the conversation")
        if not refusal.transient:
            hint = failures.rejection_hint(refusal, self.model, self.settings.api_key_env)
            return ModelError(msg, self._scrub(hint))
        if refusal.status == 429:
            return _Retry(msg, "rate limited: try later or lower max_parallel", refusal.retry_after_s)
        return _Retry(msg, "the server kept failing: try later", refusal.retry_after_s)

    def _wait(self, retry: _Retry, retries: int, watch: CallWatch | None) -> None:
        """Sleep before the next try, looking at the watch; give up when the wait cannot fit."""
        asked = retry.after_s
        if asked is not None and asked > failures.MAX_RETRY_AFTER_S:
            raise ModelError(retry.error(retries).message, f"the endpoint asks to wait {asked:.0f}s: try later")
        pause = asked if asked is not None else failures.backoff_s(retries, random.random())
        left = watch.timeout_s() if watch is not None else None
        if left is not None and left <= pause:
            raise ModelError(retry.error(retries).message, "no time is left in the run's budget (max_wall_s) to retry")
        end = time.monotonic() + pause
        while (now := time.monotonic()) < end:
            time.sleep(min(WAIT_SLICE_S, end - now))
            reason = watch.cut() if watch is not None else None
            if reason:
                raise CallCut(reason)

    def _scrub(self, text: str) -> str:
        # Servers echo keys back in 401 bodies; keep ours out of every message.
        return text.replace(self._key, "***") if self._key else text


def _status(refusal: Refusal) -> str:
    return f"HTTP {refusal.status}" if refusal.status is not None else "an error mid-stream"
