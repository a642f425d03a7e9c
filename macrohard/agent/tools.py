"""What a role can do: file tools confined to one directory, a shell in the sandbox, the plan.

The tool protocol is in agent/base.py and the file tools in agent/files.py; this
module gathers every tool a role file may name.
"""

from __future__ import annotations

from collections.abc import Callable

from typing import Literal

from pydantic import BaseModel, Field

from macrohard.agent.base import Tool, ToolError, spec_of
from macrohard.agent.confined import Confined
from macrohard.agent.files import (
    MAX_EDIT_BYTES, MAX_LIST_ENTRIES, MAX_READ_CHARS, MAX_WRITE_BYTES, EditFile, FileTool, ListFiles, ReadFile,
    WriteFile,
)
from macrohard.models import RunSpec, Ticket
from macrohard.stacks import DEFAULT as DEFAULT_STACK
from macrohard.stacks import STACKS
from macrohard.sandbox.base import ExecResult

__all__ = [
    "MAX_EDIT_BYTES", "MAX_LIST_ENTRIES", "MAX_READ_CHARS", "MAX_WRITE_BYTES", "TOOL_NAMES", "AddTicket", "Confined",
    "DescribeProduct", "EditFile", "FileTool", "Finish", "FinishPlan", "ListFiles", "ReadFile", "RunShell", "Tool", "ToolError",
    "WriteFile", "finish_tool", "spec_of",
]


class RunShell:
    name = "run_shell"
    description = (
        "Run a shell command in the project's sandbox (a Linux container with python3 and pytest, "
        "no network); the workspace is the current directory. Returns the exit code and output."
    )
    ABOUT = ("Run a shell command in the project's sandbox, a Linux container; the workspace is the current "
             "directory. Returns the exit code and output. The sandbox: ")

    class Args(BaseModel):
        command: str = Field(description="a shell command, run with sh in the workspace")
        timeout_s: float | None = Field(None, gt=0, description="seconds before the command is killed")

    def __init__(self, execute: Callable[[str, float | None], ExecResult], environment: str | None = None) -> None:
        self.execute = execute
        if environment:
            # The stack's own words for what is installed (macrohard/stacks.py), not a fixed "python3".
            self.description = self.ABOUT + environment

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


class DescribeProduct:
    """How the released product is run and checked: the smoke check of its image.

    The last call stands; without any, the stack's default check applies.
    """

    name = "describe_product"
    description = (
        "Say how the released product is run, so the release can check it in the product's image: its kind, and "
        "a command. A cli or library: a shell command that must exit 0 in the product's folder with no network, "
        "using only files the product will have (e.g. `python3 -m mytool README.md`). A service: the command that "
        "starts it listening on 0.0.0.0 at `port`, and the path that answers when it is up. `stack` names what the "
        "product is built with (python unless given)."
    )

    class Args(BaseModel):
        kind: Literal["cli", "service", "library"] = Field(description="a command-line tool, a network service, or a library")
        command: str = Field(max_length=2000, description=(
            "cli: the smoke command, which must exit 0; service: the command that starts it; library: a command that "
            "uses it, or \"\" to import its packages"))
        port: int | None = Field(None, ge=1, le=65535, description="a service's port")
        health_path: str = Field("/", max_length=200, description="a service's health endpoint, such as /health")
        stack: str | None = Field(None, max_length=40, description=f"one of: {', '.join(STACKS)}")

    def __init__(self, described: list[RunSpec], fixed_stack: str | None = None) -> None:
        self.described = described
        self.fixed_stack = fixed_stack  # the configuration's stack, which no plan changes

    def run(self, args: Args) -> str:
        command = args.command.strip()
        if args.kind in ("cli", "service") and not command:
            raise ToolError(f"a {args.kind} needs its command: " + (
                "one that must exit 0, such as `python3 -m mytool --help`" if args.kind == "cli"
                else "the one that starts it, such as `python3 -m myservice`"))
        if "\n" in command or "\x00" in command:
            raise ToolError("the command is one line of shell")
        if args.kind == "service" and args.port is None:
            raise ToolError("a service needs the port it listens on")
        if args.kind == "service" and (not args.health_path.startswith("/") or any(c.isspace() for c in args.health_path)):
            raise ToolError("health_path is a URL path starting with /, such as /health")
        stack = (args.stack or "").strip().lower() or None
        if stack is not None and stack not in STACKS:
            raise ToolError(f"unknown stack {args.stack!r}: choose one of {', '.join(STACKS)}")
        note = ""
        if self.fixed_stack and stack and stack != self.fixed_stack:
            note = f" (the stack stays {self.fixed_stack}: the configuration sets it)"
        spec = RunSpec(kind=args.kind, command=command, port=args.port if args.kind == "service" else None,
                       health_path=args.health_path if args.kind == "service" else "/",
                       stack=self.fixed_stack or stack or DEFAULT_STACK)
        self.described[:] = [spec]
        if args.kind == "service":
            return (f"the release starts `{command}` and waits for http://HOST:{args.port}{args.health_path} to answer"
                    + note)
        if not command:
            return "the release imports the library's packages and modules, which must succeed" + note
        return f"the release runs `{command}` in the product's image; it must exit 0" + note


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
    {"list_files", "read_file", "write_file", "edit_file", "run_shell", "add_ticket", "describe_product", "dispute_test",
     "rule_dispute", "finish"}
)
