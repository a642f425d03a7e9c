"""Provenance: the trailers that tie every commit, merge and tag to the run and the
transcript event that caused it, and the role identities commits are made under."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, Field, field_validator

from macrohard.errors import WorkspaceError

MAIN = "main"
RUN_TRAILER = "Macrohard-Run"
ROLE_TRAILER = "Macrohard-Role"
TICKET_TRAILER = "Macrohard-Ticket"
EVENT_TRAILER = "Macrohard-Event"
ATTEMPT_TRAILER = "Macrohard-Attempt"

MACROHARD_NAME = "macrohard"
EMAIL_DOMAIN = "macrohard.invalid"
_TRAILER_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*)$")


class Provenance(BaseModel):
    """Who made a change and which transcript event caused it."""

    run_id: str
    role: str
    ticket: str | None = None
    event_id: str
    # The role's session this work came from (a ticket's attempt, a plan's revision):
    # how a resumed step finds the work it already committed.
    attempt: int | None = Field(default=None, ge=1)

    @field_validator("run_id", "role", "event_id", "ticket")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # A newline would let a value forge further trailers.
        if value is None:
            return None
        value = value.strip()
        if not value or "\n" in value or "\r" in value:
            raise ValueError("must be a non-empty single line")
        return value

    def trailer_dict(self) -> dict[str, str]:
        """The trailers as key/value pairs, in their rendering order."""
        items = {RUN_TRAILER: self.run_id, ROLE_TRAILER: self.role}
        if self.ticket is not None:
            items[TICKET_TRAILER] = self.ticket
        items[EVENT_TRAILER] = self.event_id
        if self.attempt is not None:
            items[ATTEMPT_TRAILER] = str(self.attempt)
        return items

    def trailers(self) -> str:
        """The trailer block appended to commit and tag messages."""
        return "\n".join(f"{key}: {value}" for key, value in self.trailer_dict().items())

    @classmethod
    def from_trailers(cls, trailers: Mapping[str, str]) -> Provenance | None:
        """Rebuild provenance from parsed trailers; None for commits made outside a run."""
        try:
            return cls(
                run_id=trailers[RUN_TRAILER],
                role=trailers[ROLE_TRAILER],
                ticket=trailers.get(TICKET_TRAILER),
                event_id=trailers[EVENT_TRAILER],
                attempt=int(trailers[ATTEMPT_TRAILER]) if ATTEMPT_TRAILER in trailers else None,
            )
        except (KeyError, ValueError):
            return None


class CommitInfo(BaseModel):
    sha: str
    author: str
    author_email: str
    subject: str
    trailers: dict[str, str] = Field(default_factory=dict)
    parents: int


class MergeResult(BaseModel):
    merged: bool
    sha: str | None = None
    previous_sha: str | None = None
    conflicts: list[str] = Field(default_factory=list)
    detail: str = ""


def parse_trailers(message: str) -> dict[str, str]:
    """Trailers in the last paragraph of a message (never in its subject paragraph)."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return {}
    lines = [line for line in paragraphs[-1].splitlines() if line.strip()]
    parsed: dict[str, str] = {}
    for line in lines:
        match = _TRAILER_LINE.match(line)
        if match is None:
            # Prose in the last paragraph: it is not a trailer block.
            return {}
        parsed[match.group(1)] = match.group(2).strip()
    return parsed


def role_email(role: str) -> str:
    """``<role>@macrohard.invalid``, with the role reduced to characters an address allows."""
    local = re.sub(r"[^a-z0-9._-]+", "-", role.lower()).strip("-.") or "agent"
    return f"{local}@{EMAIL_DOMAIN}"


def identity(name: str, email: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def role_identity(role: str) -> dict[str, str]:
    return identity(role, role_email(role))


def compose_message(message: str, prov: Provenance) -> str:
    body = message.strip()
    if not body:
        raise WorkspaceError("empty commit message", hint="pass a message with at least a subject line")
    return f"{body}\n\n{prov.trailers()}\n"
