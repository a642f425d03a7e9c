"""Why a run failed, as a sentence a person can act on: recorded in run.json and shown everywhere."""

from __future__ import annotations

import traceback
from pathlib import Path

from macrohard.errors import MacrohardError
from macrohard.models import Ticket


def describe_failure(error: BaseException) -> str:
    """What stopped a run, on one line: never a bare exit status ("1") or an exception's bare name."""
    return " ".join(_sentence(error).split())


def _sentence(error: BaseException) -> str:
    if isinstance(error, MacrohardError):
        return str(error)
    if isinstance(error, SystemExit):
        # Rich exits this way when the terminal or pipe it writes to has gone.
        return f"the process was told to exit (SystemExit {error.code}), as when the terminal or pipe it wrote to closed"
    message = str(error).strip()
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}{where}: {message}" if message else f"{type(error).__name__} with no message{where}"


def why_no_ticket_landed(tickets: dict[str, Ticket]) -> str:
    """The failure of a run that ended without merging any ticket, from its tickets' own reasons."""
    if not tickets:
        return "the plan has no ticket"
    ordered = sorted(tickets.values(), key=lambda t: (int(n) if (n := t.id.rsplit("-", 1)[-1]).isdigit() else 0, t.id))
    reasons = [f"{t.id} {t.status.value}" + (f": {t.failure_reason}" if t.failure_reason else "") for t in ordered]
    return "no ticket was merged (" + "; ".join(reasons) + ")"
