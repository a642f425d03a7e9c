"""What a role can do: file tools confined to one directory, a shell in the sandbox, the plan.

The tool protocol is in agent/base.py and the file tools in agent/files.py; this
module gathers every tool a role file may name.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from macrohard.agent.base import Tool, ToolError, spec_of
from macrohard.agent.confined import Confined
from macrohard.agent.files import (
    MAX_EDIT_BYTES, MAX_LIST_ENTRIES, MAX_READ_CHARS, MAX_WRITE_BYTES, EditFile, FileTool, ListFiles, ReadFile,
    WriteFile,
)
from macrohard.models import Ticket
from macrohard.sandbox.base import ExecResult

__all__ = [
    "MAX_EDIT_BYTES", "MAX_LIST_ENTRIES", "MAX_READ_CHARS", "MAX_WRITE_BYTES", "TOOL_NAMES", "AddTicket", "Confined",
    "EditFile", "FileTool", "Finish", "FinishPlan", "ListFiles", "ReadFile", "RunShell", "Tool", "ToolError",
    "WriteFile", "finish_tool", "spec_of",
]


class RunShell:
    name = "run_shell"
    description = (
        "Run a shell command in the project's sandbox (a Linux container with python3 and pytest, "
        "no network); the workspace is the current directory. Returns the exit code and output."
    )

    class Args(BaseModel):
        command: str = Field(description="a shell command, run with sh in the workspace")
        timeout_s: float | None = Field(None, gt=0, description="seconds before the command is killed")

    def __init__(self, execute: Callable[[str, float | None], ExecResult]) -> None:
        self.execute = execute

    def run(self, args: Args) -> str:
        result = self.execute(args.command, args.timeout_s)
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        return f"{status}\n{result.output}"


class AddTicket:
    name = "add_ticket"
    description = (
        "Add a ticket to the plan. Tickets get ids T-1, T-2, ... in the order they are added; "
        "depends_on lists ids of earlier tickets that must be merged first."
    )

    class Args(BaseModel):
        title: str = Field(min_length=1, description="a short name for the work")
        description: str = Field(min_length=1, description="what to build, naming the files and functions")
        acceptance_criteria: list[str] = Field(min_length=1, description="checks a test can make, one per item")
        depends_on: list[str] = Field(default_factory=list, description="ids of earlier tickets this one builds on")

    def __init__(self, tickets: list[Ticket], limit: int | None = None) -> None:
        self.tickets = tickets
        self.limit = limit

    def run(self, args: Args) -> str:
        if self.limit is not None and len(self.tickets) >= self.limit:
            raise ToolError(f"the plan already has {len(self.tickets)} tickets, the most allowed; make tickets larger "
                            "rather than adding more, or finish the plan")
        known = {t.id for t in self.tickets}
        unknown = [d for d in args.depends_on if d not in known]
        if unknown:
            raise ToolError(f"depends_on names {', '.join(unknown)}, which are not earlier tickets ({', '.join(sorted(known)) or 'none yet'})")
        ticket = Ticket(id=f"T-{len(self.tickets) + 1}", **args.model_dump())
        self.tickets.append(ticket)
        return f"added {ticket.id}: {ticket.title}"


class Finish:
    """Ends the session: the only way an agent finishes (a reply without a call is nudged).

    The agent loop offers it to every role and ends the session when it is called; its
    run only answers what the transcript records.
    """

    name = "finish"
    description = (
        "Finish your work on this task: call it once, when everything is done, with a short summary of what you did. "
        "Your session ends with this call."
    )

    class Args(BaseModel):
        summary: str = Field(description="what you did, in a few sentences")

    def run(self, args: Args) -> str:
        return "finished"


class FinishPlan(Finish):
    """The product manager's finish: it hands the plan on as it stands, if the plan can be built.

    `check` says why the plan cannot be handed on yet (no ticket, an empty criterion...):
    then the finish is refused with that reason and the session goes on.
    """

    description = (
        "Finish the plan: call it once, when the PRD is written and every ticket is added, with a one-paragraph "
        "summary of the plan. The plan is handed on with the tickets added so far."
    )

    class Args(BaseModel):
        summary: str = Field(description="the plan in one paragraph")

    def __init__(self, check: Callable[[], str | None] | None = None) -> None:
        self.check = check

    def run(self, args: Finish.Args) -> str:
        problem = self.check() if self.check is not None else None
        if problem:
            raise ToolError(f"the plan cannot be handed on yet: {problem}")
        return "finished"


def finish_tool(tools: list[str]) -> Finish:
    """The finish tool for a role with these tools: a planner finishes its plan."""
    return FinishPlan() if AddTicket.name in tools else Finish()


TOOL_NAMES = frozenset(
    {"list_files", "read_file", "write_file", "edit_file", "run_shell", "add_ticket", "dispute_test", "rule_dispute",
     "finish"}
)
