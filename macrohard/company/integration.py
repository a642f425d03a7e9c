"""Integration, merge-queue style: passed tickets go into main, and main's suite stays green.

A mixin of Company (company/graph.py). The tickets whose verdicts passed are merged all
at once and main's whole suite runs once; on a conflict or a red suite main goes back
and they are merged one at a time to find the culprit, which goes back to its engineer
on top of the new main (conflict markers in place) as its next attempt.
"""

from __future__ import annotations

from macrohard.company.parts import CompanyParts
from macrohard.models import TestReport, Ticket, TicketStatus
from macrohard.workspace.provenance import MAIN, MergeResult

ORCHESTRATOR = "orchestrator"


class IntegrationStage(CompanyParts):

    def _integrate(self, passed: list[Ticket]) -> dict[str, Ticket]:
        """Merge these passed tickets into main; each comes back merged or sent back with why."""
        if len(passed) > 1 and (batch := self._integrate_batch(passed)) is not None:
            return batch
        return {t.id: self._integrate_one(t) for t in passed}

    def _main_verdict(self, base: str, ticket: str | None, *, prepare_next: bool = True) -> TestReport:
        """Main's whole suite, by the verdict; no test that passed at base may be lost."""
        report = self.verdicts.run("verdict:main", MAIN, ticket=ticket, expect=self.verdicts.main_passing(base))
        if report.passed and report.sha:
            self.verdicts.remember(report.sha, report.passed_ids)
        if prepare_next:
            # The next integration (or the final suite) finds its fresh sandbox started; nothing needs
            # it before then, so this one's stop and the next one's start wait while the judge runs.
            self.verdicts.prepare("verdict:main", ahead=True)
        return report

    def _integrate_batch(self, passed: list[Ticket]) -> dict[str, Ticket] | None:
        """Like a merge queue: merge them all and run main's suite once.

        On a conflict or a red suite main goes back to where it was and None is
        returned, so the tickets are integrated one at a time to find the culprit.
        """
        base = self.workspace.head()
        merged = []
        for ticket in passed:
            event_id = self._node("integrate", ticket=ticket.id, batch=[t.id for t in passed])
            merge = self.workspace.merge_ticket(ticket.id, self._prov(ORCHESTRATOR, event_id, ticket.id), ticket.title)
            if not merge.merged:
                self.workspace.reset_main(base)
                return None
            if not merged and merge.previous_sha:
                base = merge.previous_sha  # where main was before this batch, even on a resumed run
            merged.append((ticket, merge, event_id))
        report = self._main_verdict(base, None)
        self.transcript.append(
            "main.suite", tickets=[t.id for t in passed], **report.model_dump(exclude={"output_tail", "ticket"}),
        )
        if not report.passed:
            self.workspace.reset_main(base)
            return None
        return {t.id: self._merged(t, merge, event_id) for t, merge, event_id in merged}

    def _merged(self, ticket: Ticket, merge: MergeResult, event_id: str) -> Ticket:
        # A branch main already held (the ticket changed nothing) lands with no merge commit.
        sha = merge.sha if merge.sha != merge.previous_sha else None
        self.transcript.append(
            "git.merge", role=ORCHESTRATOR, ticket=ticket.id, sha=sha, cause=event_id, detail=merge.detail
        )
        # Its roles' sandbox (parked since its tester finished) stops before git removes the worktree,
        # in the background: the next step need not wait for either.
        self.sandboxes.retire(ticket.id, lambda: self.workspace.remove_worktree(ticket.id))
        return ticket.model_copy(update={"status": TicketStatus.MERGED, "merge_sha": sha, "last_failure": None})

    def _integrate_one(self, ticket: Ticket) -> Ticket:
        event_id = self._node("integrate", ticket=ticket.id)
        merge = self.workspace.merge_ticket(ticket.id, self._prov(ORCHESTRATOR, event_id, ticket.id), ticket.title)
        if not merge.merged:
            failure = (
                f"Merging ticket/{ticket.id} into main conflicted in: {', '.join(merge.conflicts)}.\n"
                "main has been merged into your branch; resolve the conflict markers in those files."
            )
            self.transcript.append("merge.conflict", ticket=ticket.id, conflicts=merge.conflicts, detail=merge.detail)
            self._bring_main_in(ticket)
            return self._after_failure(ticket, failure, "it conflicts with main")
        assert merge.previous_sha is not None
        report = self._main_verdict(merge.previous_sha, ticket.id)
        self.transcript.append("main.suite", ticket=ticket.id, **report.model_dump(exclude={"output_tail", "ticket"}))
        if not report.passed:
            self.workspace.reset_main(merge.previous_sha)
            self._bring_main_in(ticket)
            failure = (
                f"After merging into main the verdict on main's whole suite failed: {report.reason}. "
                f"Your branch now has main's other work merged in:\n{report.output_tail}"
            )
            return self._after_failure(ticket, failure, "main's suite fails with it")
        return self._merged(ticket, merge, event_id)

    def _bring_main_in(self, ticket: Ticket) -> None:
        """Put the ticket's branch on top of main for its next attempt (markers left on conflict)."""
        with self.sandboxes.quiet(ticket.id):
            self.workspace.discard_uncommitted(ticket.id)  # leftovers of the roles' commands
            self.workspace.update_from_main(ticket.id)
