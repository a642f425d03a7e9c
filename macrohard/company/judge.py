"""The judge: the orchestrator's verdict on each attempt whose roles are done, then integration.

A mixin of Company (company/graph.py). It runs as one branch of a step, beside the
ticket pipelines of the next tickets, so verdicts and merges (CPU work: containers and
test runs) overlap the next tickets' model calls instead of holding them up. A ticket
passes on the verdict of its branch's commit (company/verdict.py) when its new tests
fail on its base; the passed ones are then integrated (company/integration.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from macrohard.company.integration import ORCHESTRATOR
from macrohard.company.parts import CompanyParts
from macrohard.company.state import CompanyState
from macrohard.company.verdict import base_id
from macrohard.models import TestReport, Ticket, TicketStatus

AFTER_JUDGE = "after the judge"
CALLS_WAIT_S = 0.5  # at most: a step whose tickets are slow to call does not keep its judge waiting longer


class JudgeStage(CompanyParts):

    def judge(self, state: CompanyState) -> CompanyState:
        """Verdicts for the tickets sent here (side by side), then the passed ones into main."""
        waiting = sorted(state.get("tickets", {}).values(), key=lambda t: t.id)
        # The step's tickets get to their model calls first: until then they are the critical path,
        # while the judge has their calls' time (at least a second each) to run beside them.
        self.sandboxes.wait_calls(CALLS_WAIT_S)
        # The next step waits for the judge: sandboxes starting ahead and stopping wait for it.
        with self.sandboxes.urgent():
            with ThreadPoolExecutor(max_workers=max(1, len(waiting)), thread_name_prefix="verdict") as pool:
                # A ticket already passed (its integration was interrupted) is not judged again.
                judged = list(pool.map(lambda t: t if t.status == TicketStatus.PASSED else self._judge_one(t), waiting))
            passed = [t for t in judged if t.status == TicketStatus.PASSED]
            integrated = self._integrate(passed)
            if state.get("judge_alone"):
                # No model call is under way beside this judge: the next step's first one (the deployer's,
                # or the next attempts') is the critical path, and what the judge held back waits for it too.
                self.sandboxes.before_calls([AFTER_JUDGE])
            return {"tickets": {**{t.id: t for t in judged}, **integrated}}

    def _judge_one(self, ticket: Ticket) -> Ticket:
        if self.resumed and (sha := self.workspace.find_merge(self.run_id, ticket.id, ORCHESTRATOR)):
            # Interrupted between its merge and main's suite: its verdict passed, or the
            # orchestrator would not have merged it (roles cannot move main). Judging it
            # again would measure it against a base that already holds it.
            self.transcript.append("node.skipped", ticket=ticket.id, attempt=ticket.attempts, merge=sha,
                                   reason="its verdict passed and it was merged before the run was interrupted")
            return ticket.model_copy(update={"status": TicketStatus.PASSED, "last_failure": None})
        self._node("judge", ticket=ticket.id, attempt=ticket.attempts)
        base = self.workspace.merge_base(ticket.id)
        expect = self.verdicts.main_passing(base)
        # Once the verdict passes, the ticket's tests run again on its base in the same sandbox.
        report, base_report = self.verdicts.run_then_base(
            f"verdict:{ticket.id}", f"ticket/{ticket.id}", base, ticket=ticket.id, expect=expect,
            base_layers=[(f"ticket/{ticket.id}", self.guard.is_test_file)],
        )
        if report.passed and base_report is not None:
            report = self._tests_test(ticket, report, base, expect, base_report)
        self.transcript.append(
            "verdict", ticket=ticket.id, attempt=ticket.attempts, put_back=ticket.put_back,
            **report.model_dump(exclude={"output_tail", "ticket"}),
        )
        if report.passed:
            return ticket.model_copy(update={"status": TicketStatus.PASSED, "last_failure": None})
        return self._after_failure(ticket, _failure_text(report, ticket), "its verdict fails")

    def _tests_test(
        self, ticket: Ticket, report: TestReport, base: str, expect: set[str], on_base: TestReport
    ) -> TestReport:
        """A passing verdict stands only if the ticket's new tests fail on its base (main before it):
        `on_base` ran the code as it was before the ticket with the ticket's tests (and their configuration)."""
        known = {base_id(i) for i in expect}
        new = sorted(i for i in report.passed_ids if base_id(i) not in known)
        if not new:
            return report.model_copy(update={
                "passed": False, "reason": "the tester added no test for this ticket: every test that ran was already on main",
            })
        # By id without parameters: a test parametrized on the code's state gets another id on the base.
        passes_on_base = {base_id(i) for i in on_base.passed_ids}
        hollow = sorted(i for i in new if base_id(i) in passes_on_base)
        self.transcript.append(
            "verdict.base", ticket=ticket.id, attempt=ticket.attempts, sha=base, new_tests=new, pass_on_base=hollow,
            event_id=on_base.event_id,
        )
        if hollow:
            shown = ", ".join(hollow[:10])
            return report.model_copy(update={
                "passed": False,
                "reason": f"the ticket's tests do not test its change: {shown} pass without it (on main before the ticket)",
            })
        return report


def _failure_text(report: TestReport, ticket: Ticket) -> str:
    text = f"The orchestrator's verdict failed: {report.reason}.\n`{_short(report.command)}` output:\n{report.output_tail}"
    if ticket.put_back:
        text += (
            "\n\nThese changes outside your territory were put back (the committed tree has none of them): "
            + ", ".join(ticket.put_back)
        )
    if ticket.unfinished:
        text += "\n\nIn this attempt " + "; ".join(ticket.unfinished) + "."
    return text


def _short(command: str) -> str:
    return "pytest" if "pytest" in command else command
