"""Noticing a session that goes round in circles: the same call again, the same error again.

A call that only looks (list_files, read_file, run_shell) and is repeated with its
arguments unchanged, while nothing was changed in between, tells the model nothing new;
neither does an error it already got twice. The loop answers the first such finding with
a nudge and ends the attempt as stuck at the next.
"""

from __future__ import annotations

import json
from collections import Counter, deque

from macrohard.agent.outcome import one_line
from macrohard.llm.base import ToolCall

REPEATS = 3  # the same call, or the same error, this many times is a finding
WINDOW = 8  # repeated calls count within this many of the latest calls
# Tools whose success changes nothing the next call could see differently. A successful
# call of any other tool (a write, an edit, a ticket) starts the count of repeats afresh.
LOOKING = frozenset({"list_files", "read_file", "run_shell"})


def call_key(call: ToolCall) -> str:
    """A call's tool and arguments, with the arguments' spacing and key order normalised."""
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True, ensure_ascii=False)
    except (ValueError, RecursionError):  # malformed, or nested past Python's stack
        arguments = call.arguments
    return f"{call.name} {arguments}"


class StuckWatch:
    """Sees every call's key and outcome; says when the session is repeating itself."""

    def __init__(self) -> None:
        self._recent: deque[str] = deque(maxlen=WINDOW)
        self._errors: Counter[str] = Counter()

    def saw(self, call: ToolCall, ok: bool, result: str) -> str | None:
        """A finding (one line) once this call makes the same call or error REPEATS times, else None."""
        key = call_key(call)
        if ok and call.name not in LOOKING:
            self._recent.clear()  # something changed: earlier calls may well answer differently now
        else:
            self._recent.append(key)
            if self._recent.count(key) >= REPEATS:
                return one_line(
                    f"{call.name} was called {REPEATS} times with the same arguments ({_clip(call.arguments)}) "
                    f"within {WINDOW} calls, with nothing changed in between"
                )
        if not ok:
            error = f"{call.name}: {result}"
            self._errors[error] += 1
            if self._errors[error] >= REPEATS:
                return one_line(f"the same error {self._errors[error]} times: {error}")
        return None


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
