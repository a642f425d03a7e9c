"""Why a run failed, as recorded in run.json and shown by runs, the summary and the viewer."""

from __future__ import annotations

from macrohard.company.failures import describe_failure, why_no_ticket_landed
from macrohard.errors import ScriptError
from macrohard.models import Ticket, TicketStatus


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 - the point is to keep any of them
        return caught


def test_a_failure_is_a_sentence_never_a_bare_status_or_name():
    assert describe_failure(raised(SystemExit(1))) != "1"
    assert "SystemExit 1" in describe_failure(raised(SystemExit(1))) and "closed" in describe_failure(raised(SystemExit(1)))
    bare = describe_failure(raised(AssertionError()))
    assert bare != "AssertionError" and bare.startswith("AssertionError with no message in raised (test_run_failures.py:")
    assert describe_failure(raised(KeyError("T-9"))).startswith("KeyError in raised (test_run_failures.py:")
    assert describe_failure(raised(KeyError("T-9"))).endswith(": 'T-9'")
    assert describe_failure(ScriptError("the script ran out", "add steps")) == "the script ran out (add steps)"
    assert "\n" not in describe_failure(raised(ValueError("two\nlines")))


def test_a_run_that_merged_nothing_says_what_became_of_each_ticket():
    tickets = {
        "T-10": Ticket(id="T-10", title="b", description="d", acceptance_criteria=["c"], status=TicketStatus.BLOCKED,
                       failure_reason="T-2 failed"),
        "T-2": Ticket(id="T-2", title="a", description="d", acceptance_criteria=["c"], status=TicketStatus.FAILED,
                      failure_reason="the verdict failed after 3 attempts"),
    }
    assert why_no_ticket_landed(tickets) == (
        "no ticket was merged (T-2 failed: the verdict failed after 3 attempts; T-10 blocked: T-2 failed)")
    assert why_no_ticket_landed({}) == "the plan has no ticket"
