"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class MacrohardError(Exception):
    """An expected failure: says what went wrong and what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(MacrohardError):
    """Settings, role files or a spec that cannot be used."""


class ModelError(MacrohardError):
    """The model endpoint refused a request or could not be reached after retries."""


class ContextOverflowError(ModelError):
    """The request did not fit the model's context window.

    Raised for an HTTP 400 `context_length_exceeded` (or a server's like message), a
    413, or a 429 that says the request is too large: the agent loop answers it by
    compacting the conversation harder and asking again, never by failing the run.
    """


class CallCut(MacrohardError):
    """A model call stopped before its answer ended, because its CallWatch asked.

    `reason` is the watch's (a pause asked by the user, a budget that ran out while the
    answer streamed); the agent loop turns it into a pause of the run. The tokens are
    estimates of what the abandoned call cost (what was sent, what had arrived), so
    budgets can count a discarded generation too.
    """

    def __init__(self, reason: str, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class ScriptError(MacrohardError):
    """A scripted model's script ran out or does not match what was asked."""


class SandboxError(MacrohardError):
    """The Docker engine or the sandbox image is not usable."""


class WorkspaceError(MacrohardError):
    """A git operation on the product repository failed."""
