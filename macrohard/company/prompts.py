"""Task prompts: what a role is told about its task.

Each prompt holds only what that task needs (the ticket, its files, its last failure),
so it does not grow with the number of tickets already done.
"""

from __future__ import annotations

from macrohard.company.disputes import describe
from macrohard.models import Dispute, Spec, Ticket
from macrohard.stacks import STACKS, Stack

MAX_FILES_LISTED = 20


def _ticket_block(ticket: Ticket) -> str:
    criteria = "\n".join(f"- {c}" for c in ticket.acceptance_criteria)
    return f"Ticket {ticket.id}: {ticket.title}\n\n{ticket.description}\n\nAcceptance criteria:\n{criteria}"


def _files_block(relevant: list[str], total: int) -> str:
    shown = relevant[:MAX_FILES_LISTED]
    listing = "\n".join(f"- {f}" for f in shown) or "(none yet)"
    return (
        f"Files this ticket names or builds on:\n{listing}\n\n"
        f"The repository has {total} files in all; use list_files and read_file to see the others."
    )


def environment_block(stack: Stack) -> str:
    """What a role is told about the sandbox its code runs and is tested in."""
    return f"The build environment ({stack.name} stack): {stack.environment}\nTests: {stack.tests}."


def stacks_block(fixed: Stack | None) -> str:
    """What the product manager is told about stacks: the configured one, or the choice."""
    if fixed is not None:
        return f"The product is built with the {fixed.name} stack (set by the configuration).\n{environment_block(fixed)}"
    lines = ["Choose the product's stack with describe_product's `stack` (python unless you say otherwise; the "
             "spec may name one). Each is a sandbox with no network:"]
    lines += [f"- {s.name}: {s.environment}" for s in STACKS.values()]
    return "\n".join(lines)


def plan_prompt(
    spec: Spec, feedback: str | None = None, unfinished: str | None = None, codebase: str | None = None,
    stacks: str = "",
) -> str:
    text = spec.text.strip()
    # The title comes from the spec's first heading when it has one: say it once.
    headed = any(line.startswith("#") and line.lstrip("# ").strip() == spec.title for line in text.splitlines())
    title = "" if headed else f"# {spec.title}\n\n"
    prompt = f"Here is the spec from the customer.\n\n{title}{text}\n"
    if stacks:
        prompt += f"\n{stacks}\n"
    if codebase:
        prompt += (
            "\nThe spec asks for a change to an existing codebase. Plan the change: tickets that name the "
            f"existing files they touch, and keep what works working.\n\n{codebase}\n"
        )
    if feedback:
        prompt += (
            "\nYour previous plan was rejected with this comment:\n\n"
            f"{feedback}\n\nWrite the PRD and the tickets again, taking it into account.\n"
        )
    if unfinished:
        prompt += (
            f"\nYour previous session on this plan ended before you finished it: {unfinished}.\n"
            "Start the plan again: write the PRD, add every ticket, then call finish.\n"
        )
    return prompt


def engineer_prompt(ticket: Ticket, relevant: list[str], total: int, environment: str = "") -> str:
    parts = [
        _ticket_block(ticket),
        "docs/PRD.md describes the whole product; read it if you need the context.",
        _files_block(relevant, total),
        *([environment] if environment else []),
    ]
    if ticket.last_failure:
        parts.append(
            f"This is attempt {ticket.attempts}. The last attempt failed:\n\n{ticket.last_failure}\n\n"
            "Fix the cause of this failure."
        )
    if ticket.disputes:
        parts.append(f"Disputes about this ticket's tests so far:\n{describe(ticket.disputes)}")
    return "\n\n".join(parts)


def tester_prompt(
    ticket: Ticket, relevant: list[str], total: int, disputes: list[Dispute] | None = None, environment: str = ""
) -> str:
    parts = [
        _ticket_block(ticket),
        f"The engineer has implemented it (attempt {ticket.attempts}). Write or update tests that check "
        "every acceptance criterion, and run the suite. Each new test must fail on the code as it was "
        "before this ticket.",
        _files_block(relevant, total),
        *([environment] if environment else []),
    ]
    if ticket.last_failure:
        parts.append(f"The last attempt's verdict failed:\n\n{ticket.last_failure}")
    earlier = [d for d in ticket.disputes if d.attempt < ticket.attempts]
    if earlier:
        parts.append(f"Earlier disputes about your tests, with their rulings:\n{describe(earlier)}")
    if disputes:
        parts.append(
            "The engineer disputes these tests as contradicting the ticket. Rule on each with rule_dispute: "
            "'change' (then change the test) or 'uphold' (the product manager then decides):\n" + describe(disputes)
        )
    return "\n\n".join(parts)


def arbitration_prompt(ticket: Ticket, disputes: list[Dispute]) -> str:
    return "\n\n".join([
        _ticket_block(ticket),
        "The engineer disputes these tests as contradicting the ticket, and the tester did not agree to change them. "
        "Read the ticket, the tests and the code (read_file), then rule on each with rule_dispute: 'uphold' (the "
        "test is right and the engineer must meet it) or 'change' (the test contradicts the ticket and the tester "
        "must change it). Your ruling stands.",
        describe(disputes),
    ])


def release_prompt(version: str, merged: list[Ticket], unfinished: list[Ticket], feedback: str | None = None) -> str:
    lines = [f"Prepare release {version}.", "", "Merged tickets:"]
    lines += [f"- {t.id}: {t.title}" for t in merged]
    if unfinished:
        lines += ["", "Not in this release (failed or blocked):"]
        lines += [f"- {t.id}: {t.title} ({t.status.value}: {t.failure_reason or ''})" for t in unfinished]
    if feedback:
        lines += ["", f"Your previous release notes were rejected with this comment:\n\n{feedback}"]
    return "\n".join(lines)
