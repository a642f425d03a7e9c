"""The ticket pipeline's nodes: engineer, tester, arbitrate, handoff (the roles' part of one attempt).

A mixin of Company (company/graph.py), which provides the attributes and helpers used
here; the stages' logic lives in territories.py and disputes.py, and the verdict on
the attempt in judge.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from macrohard.agent.disputes import DisputeTest, RuleDispute
from macrohard.agent.loop import AgentResult
from macrohard.agent.tools import Confined, ListFiles, ReadFile, Tool
from macrohard.company.parts import CompanyParts
from macrohard.company import disputes, prompts
from macrohard.company.state import TicketState
from macrohard.models import Dispute, Ticket, TicketStatus
from macrohard.workspace.tree import TreeTooLarge


class TicketPipeline(CompanyParts):

    def _ticket_commit(
        self, ticket: Ticket, role: str, message: str, result: AgentResult
    ) -> tuple[Ticket, str | None, str | None]:
        """A ticket role's commit: (the ticket, why the attempt's work was dropped, the commit).

        With its worktree over the limits the attempt's work is dropped. A role that did
        not finish still has what it did committed; the ticket notes why it stopped.
        """
        root = self.workspace.worktree_path(ticket.id)
        # The role's session is over: what its commands left running ends now, so it can
        # neither race the commit nor touch the worktree while the next role works.
        self.sandboxes.end_processes(ticket.id)
        if not result.finished:
            ticket = ticket.model_copy(update={"unfinished": [*ticket.unfinished, f"the {role} did not finish: {result.reason}"]})
        try:
            sha, put_back = self._commit(root, role, message, result, ticket.id, ticket.attempts)
        except TreeTooLarge as e:
            self.transcript.append("worktree.too_large", role=role, ticket=ticket.id, reason=e.message)
            self.sandboxes.release(ticket.id)
            with self.sandboxes.quiet(ticket.id):
                self.workspace.remove_worktree(ticket.id)
            self.workspace.worktree(ticket.id)
            why = f"the {role}'s worktree was over its limits ({e.message}); this attempt's changes were discarded"
            return ticket, why, None
        return ticket.model_copy(update={"put_back": [*ticket.put_back, *put_back]}), None, sha

    def engineer(self, state: TicketState) -> TicketState:
        ticket = state["ticket"].model_copy(
            update={"attempts": state["ticket"].attempts + 1, "put_back": [], "unfinished": []}
        )
        root = self.workspace.worktree_path(ticket.id)
        self._node("engineer", ticket=ticket.id, attempt=ticket.attempts)
        try:  # until the engineer's call is under way, background work waits (dispatch began the stretch)
            if self._already_done("engineer", f"ticket/{ticket.id}", ticket.id, ticket.attempts):
                return {"ticket": ticket}
            # Start the sandbox now; it is ready by the time the engineer's first answer is (a verdict
            # running meanwhile goes first: a command of the engineer's would not wait for it).
            self.sandboxes.prepare(ticket.id, root, ahead=True)
            raised: list[Dispute] = []
            tools = [
                *self._file_tools(root, "engineer"), self._shell(ticket.id, root, "engineer"),
                DisputeTest(raised, disputes.dispute_maker(self.transcript, ticket)),
            ]
            prompt = prompts.engineer_prompt(ticket, *relevant_files(root, ticket, state.get("context_files", [])),
                                             environment=prompts.environment_block(self.environment.stack))
        finally:
            self.sandboxes.calling(ticket.id)
        result = self._agent("engineer", tools, ticket.id, prompt, ticket.id, ticket.attempts)
        # From its answer to the tester's first call, the ticket is on the critical path again.
        self.sandboxes.before_calls([ticket.id])
        ticket = ticket.model_copy(update={"disputes": [*ticket.disputes, *raised]})
        ticket, lost, sha = self._ticket_commit(
            ticket, "engineer", f"{ticket.id}: {ticket.title} (attempt {ticket.attempts})", result
        )
        if sha is None and not raised and not lost and not self.workspace.changed_files(ticket.id):
            # Nothing for the tester to test (this attempt or an earlier one changed nothing
            # on the branch), nor a dispute to rule on: the attempt ends here.
            how = "it finished without a change" if result.finished else f"it stopped: {result.reason}"
            return {"ticket": ticket, "nothing": f"the engineer changed nothing ({how})"}
        return {"ticket": ticket, "lost": lost or ""}

    def tester(self, state: TicketState) -> TicketState:
        ticket = state["ticket"]
        try:  # the stretch the engineer's answer began ends once the tester's call is under way
            if state.get("nothing"):
                return {}  # handoff fails the attempt
            root = self.workspace.worktree_path(ticket.id)
            self._node("tester", ticket=ticket.id, attempt=ticket.attempts)
            # The verdict's fresh sandbox starts while the tester works (once no verdict runs).
            self.verdicts.prepare(f"verdict:{ticket.id}", ahead=True, runs=2)  # the verdict, then its tests on the base
            if self._already_done("tester", f"ticket/{ticket.id}", ticket.id, ticket.attempts):
                return {}
            self.sandboxes.prepare(ticket.id, root)
            open_disputes = disputes.open_for_tester(ticket)
            ruled = list(open_disputes)
            tools = [
                *self._file_tools(root, "tester"), self._shell(ticket.id, root, "tester"),
                RuleDispute(ruled, "tester", disputes.ruling_recorder(self.transcript, "tester")),
            ]
            prompt = prompts.tester_prompt(
                ticket, *relevant_files(root, ticket, state.get("context_files", [])), open_disputes,
                environment=prompts.environment_block(self.environment.stack),
            )
        finally:
            self.sandboxes.calling(ticket.id)
        result = self._agent("tester", tools, ticket.id, prompt, ticket.id, ticket.attempts)
        ticket = disputes.merged(ticket, ruled)
        ticket, lost, _ = self._ticket_commit(ticket, "tester", f"{ticket.id}: tests (attempt {ticket.attempts})", result)
        # Nothing runs in the roles' sandbox after this: the verdict has sandboxes of its own.
        self.sandboxes.release(ticket.id, later=True)
        return {"ticket": ticket, "lost": state.get("lost") or lost or ""}

    def arbitrate(self, state: TicketState) -> TicketState:
        """The product manager rules on the disputes of this attempt that the tester did not accept."""
        ticket = state["ticket"]
        pending = disputes.for_product_manager(ticket)
        if not pending:
            return {}
        self._node("arbitrate", ticket=ticket.id, attempt=ticket.attempts, disputes=[d.id for d in pending])
        ruled = list(pending)
        fs = Confined(self.workspace.worktree_path(ticket.id), refuse_write=lambda path: "read only")
        tools: list[Tool] = [
            ListFiles(fs), ReadFile(fs), RuleDispute(ruled, "product_manager", disputes.ruling_recorder(self.transcript, "product_manager")),
        ]
        # A session per arbitration of this ticket: the scripted model counts them as sessions.
        session = 1 + sum(1 for e in self.transcript.events() if e.kind == "node" and e.ticket == ticket.id
                          and e.data.get("node") == "arbitrate" and e.data.get("attempt") != ticket.attempts)
        self._agent("product_manager", tools, ticket.id, prompts.arbitration_prompt(ticket, pending), ticket.id, session)
        return {"ticket": disputes.merged(ticket, ruled)}

    def handoff(self, state: TicketState) -> TicketState:
        """The attempt's roles are done: on to the judge, unless the attempt already failed.

        The verdict runs in the next step, beside the next tickets' roles, so a ticket's
        tests and integration never keep another ticket's engineer waiting.
        """
        ticket = state["ticket"]
        self.sandboxes.release(ticket.id, later=True)
        failure, why = None, ""
        if wrong := disputes.overturned(ticket):
            failure = (
                "The product manager ruled that these tests contradict the ticket; the tester must change them:\n"
                + disputes.describe(wrong)
            )
            why = "its tests were ruled to contradict it"
        elif state.get("nothing"):
            failure = f"This attempt produced nothing to test: {state['nothing']}. Implement the ticket, then call finish."
            why = "its engineer produced nothing"
        elif state.get("lost"):
            failure, why = state["lost"], "its worktree was over its limits"
        if failure is None:
            ticket = ticket.model_copy(update={"status": TicketStatus.AWAITING_VERDICT})
        else:
            self.verdicts.discard(f"verdict:{ticket.id}")
            ticket = self._after_failure(ticket, failure, why)
        return {"ticket": ticket, "tickets": {ticket.id: ticket}}

    def _after_failure(self, ticket: Ticket, failure: str, why: str) -> Ticket:
        """Failed for good when attempts are used up; otherwise back to dispatch for the next one.

        Not straight back to the engineer: the next attempt is dispatched with the next
        round, so one ticket's retries do not keep the round's other tickets (passed and
        waiting to be integrated) and their dependants waiting.
        """
        if ticket.attempts >= self.settings.max_attempts:
            reason = f"{why} after {ticket.attempts} attempts"
            self.transcript.append("ticket.failed", ticket=ticket.id, reason=reason)
            return ticket.model_copy(update={"status": TicketStatus.FAILED, "last_failure": failure, "failure_reason": reason})
        return ticket.model_copy(update={"status": TicketStatus.TODO, "last_failure": failure})


_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*\.\w+")


def relevant_files(root: Path, ticket: Ticket, context: list[str]) -> tuple[list[str], int]:
    """Files the ticket names or builds on (that exist), and how many files there are."""
    every = set(Confined(root).files())  # all of them: a listing for the model stops at a limit
    named = set(_PATH.findall(" ".join([ticket.title, ticket.description, *ticket.acceptance_criteria])))
    return sorted((named | set(context)) & every), len(every)
