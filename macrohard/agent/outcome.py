"""How a session ended: a typed outcome and the one-line reason the next attempt is told."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from macrohard.models import Usage

# The longest reason kept: it is handed to the next attempt's prompt and shown in a table.
MAX_REASON_CHARS = 300


class Outcome(StrEnum):
    """Why a session ended. Only `finished` means the model said it was done (by `finish`)."""

    FINISHED = "finished"
    STEP_LIMIT = "step_limit"  # the role's max_steps ran out
    NO_ACTION = "no_action"  # replies without a tool call, after every nudge
    ERRORS = "errors"  # every call failed, several replies in a row
    STUCK = "stuck"  # the same call or the same error again, after a nudge
    OVERFLOW = "overflow"  # the conversation could not be made to fit the model's window


class AgentResult(BaseModel):
    role: str
    task: str
    finished: bool  # the model called finish (rather than hitting a limit)
    reason: str  # one line: "done", or why the session ended unfinished
    summary: str  # the finish call's summary; empty when unfinished
    steps: int
    usage: Usage
    last_event_id: str | None  # the last model answer: commits name it as their cause
    outcome: Outcome = Outcome.FINISHED


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Text folded onto one line and clipped: reasons end up in prompts and tables."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
