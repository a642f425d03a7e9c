"""The company as a LangGraph StateGraph (see the data flow in ARCHITECTURE.md).

Facts come from the orchestrator, never from a model's word: a ticket passes when the
orchestrator's own verdict (company/verdict.py) passes on its branch and its new tests
fail without it; it is merged when main's verdict stays green; a release is tagged on
the commit whose final verdict (and hidden acceptance tests) passed. Each role's
changes outside its territory are put back at its commit (company/territories.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send, interrupt

from macrohard.agent.loop import AgentLoop, AgentResult
from macrohard.agent.tools import (
    AddTicket, Confined, EditFile, ListFiles, ReadFile, RunShell, Tool, ToolError, WriteFile,
)
from macrohard.agent.disputes import DisputeTest, RuleDispute
from macrohard.company import disputes, prompts
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.state import CompanyState, TicketOutput, TicketState
from macrohard.company.territories import TerritoryGuard
from macrohard.company.verdict import EXTRA_DIR, Verdicts, base_id, missing_acceptance
from macrohard.config import Settings
from macrohard.control import RunControl
from macrohard.llm.base import ChatModel
from macrohard.models import PRD, ApprovalDecision, Dispute, Release, Spec, TestReport, Ticket, TicketStatus
from macrohard.roles import Role
from macrohard.sandbox.base import ExecResult
from macrohard.transcript.log import TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace, MergeResult, Provenance
from macrohard.workspace.tree import TreeTooLarge

RELEASE_VERSION = "v0.1.0"
ACCEPTANCE_HIDES = frozenset({"pyproject.toml", "setup.cfg"})
PRD_PATH = "docs/PRD.md"  # where roles/product_manager.md asks for the PRD
MAIN = "main"
ORCHESTRATOR = "orchestrator"


@dataclass
class Company:
    """Everything the nodes need; the graph's state holds only ids and statuses."""

    run_id: str
    spec: Spec
    settings: Settings
    roles: dict[str, Role]
    model_for: Callable[[str], ChatModel]
    transcript: TranscriptLog
    workspace: GitWorkspace
    sandboxes: RunSandboxes
    control: RunControl | None = None  # budgets and pause requests, asked before every model call
    # Whether an earlier process drove this run: only then can a node find its own
    # work already committed (nothing re-runs a node within one process).
    resumed: bool = False

    def __post_init__(self) -> None:
        self.guard = TerritoryGuard(self.roles, self.workspace, self.transcript)
        self.verdicts = Verdicts(self.settings, self.workspace, self.sandboxes, self.transcript, self.guard.is_test_file)

    # -- helpers -----------------------------------------------------------

    def _prov(self, role: str, event_id: str, ticket: str | None = None, attempt: int | None = None) -> Provenance:
        return Provenance(run_id=self.run_id, role=role, ticket=ticket, event_id=event_id, attempt=attempt)

    def _already_done(self, role: str, ref: str, ticket: str | None, attempt: int) -> str | None:
        """The commit this role made for this attempt before the run was interrupted, if any.

        A node re-runs from its start on resume; with its work already committed it
        must not ask the model again (spending twice) or commit twice.
        """
        if not self.resumed:
            return None
        sha = self.workspace.find_work(ref, self.run_id, role, ticket, attempt)
        if sha is not None:
            self.transcript.append("node.skipped", role=role, ticket=ticket, attempt=attempt, commit=sha,
                                   reason="its work was committed before the run was interrupted")
        return sha

    def _node(self, name: str, ticket: str | None = None, **data: object) -> str:
        return self.transcript.append("node", ticket=ticket, node=name, **data).id

    def _agent(
        self, role_name: str, tools: list[Tool], task: str, prompt: str, ticket: str | None = None, attempt: int = 1
    ) -> AgentResult:
        role = self.roles[role_name]
        allowed = [t for t in tools if t.name in role.tools]
        loop = AgentLoop(
            role, self.model_for(role_name), allowed, self.transcript,
            task=task, ticket=ticket, attempt=attempt, control=self.control,
        )
        result = loop.run(prompt)
        self.transcript.append(
            "agent.finished", role=role_name, ticket=ticket, task=task, finished=result.finished,
            reason=result.reason, summary=result.summary, steps=result.steps, usage=result.usage.model_dump(),
        )
        return result

    def _file_tools(self, root: Path, role: str) -> list[Tool]:
        fs = Confined(root, refuse_write=lambda path: self.guard.refusal(role, path))
        return [ListFiles(fs), ReadFile(fs), WriteFile(fs), EditFile(fs)]

    def _shell(self, key: str, root: Path, role: str) -> RunShell:
        limit = self.settings.sandbox.timeout_s

        def execute(command: str, timeout: float | None) -> ExecResult:
            # The model may ask for less time than the configured limit, never more.
            return self.sandboxes.exec(key, root, command, timeout_s=min(timeout or limit, limit), role=role)[0]

        return RunShell(execute)

    def _commit(
        self, root: Path, role: str, message: str, result: AgentResult, ticket: str | None, attempt: int
    ) -> tuple[str | None, list[str]]:
        """Commit what the role changed inside its territory; (the sha, the paths put back).

        Nothing in the ticket's sandbox runs meanwhile: it is frozen, so no process the
        role left behind can plant anything between the checks and host git.
        """
        event_id = result.last_event_id or self._node("commit", ticket=ticket)
        with self.sandboxes.quiet(ticket or MAIN):
            put_back = self.guard.enforce(role, root, f"ticket/{ticket}" if ticket else MAIN, ticket)
            sha = self.workspace.commit(root, message, self._prov(role, event_id, ticket, attempt))
        if sha:
            self.transcript.append("git.commit", role=role, ticket=ticket, sha=sha, message=message, cause=event_id)
        return sha, put_back

    def _ticket_commit(
        self, ticket: Ticket, role: str, message: str, result: AgentResult
    ) -> tuple[Ticket, str | None]:
        """A ticket role's commit; with its worktree over the limits, the attempt's work is dropped and why."""
        root = self.workspace.worktree_path(ticket.id)
        try:
            _, put_back = self._commit(root, role, message, result, ticket.id, ticket.attempts)
        except TreeTooLarge as e:
            self.transcript.append("worktree.too_large", role=role, ticket=ticket.id, reason=e.message)
            self.sandboxes.release(ticket.id)
            with self.sandboxes.quiet(ticket.id):
                self.workspace.remove_worktree(ticket.id)
            self.workspace.worktree(ticket.id)
            return ticket, f"the {role}'s worktree was over its limits ({e.message}); this attempt's changes were discarded"
        return ticket.model_copy(update={"put_back": [*ticket.put_back, *put_back]}), None

    def _main_verdict(self, base: str, ticket: str | None) -> TestReport:
        """Main's whole suite, by the verdict; no test that passed at base may be lost."""
        report = self.verdicts.run("verdict:main", MAIN, ticket=ticket, expect=self.verdicts.main_passing(base))
        if report.passed and report.sha:
            self.verdicts.remember(report.sha, report.passed_ids)
        # The next integration (or the final suite) finds its fresh sandbox started.
        self.verdicts.prepare("verdict:main")
        return report

    # -- company nodes -----------------------------------------------------

    def intake(self, state: CompanyState) -> CompanyState:
        sha = self.workspace.init()
        self._node("intake", spec_title=self.spec.title, spec_sha256=self.spec.sha256, main=sha)
        return {}

    def product_manager(self, state: CompanyState) -> CompanyState:
        attempt = state.get("plan_attempt", 0) + 1
        self._node("product_manager", attempt=attempt)
        root = self.workspace.repo_dir
        if self._already_done("product_manager", MAIN, None, attempt) and (prd := self._recorded_plan(attempt)):
            return self._planned(state, prd.tickets, attempt)
        planned: list[Ticket] = []
        prompt = prompts.plan_prompt(self.spec, state.get("feedback") if state.get("rejected") else None)
        result = self._agent(
            "product_manager", [*self._file_tools(root, "product_manager"), AddTicket(planned)], "plan", prompt,
            attempt=attempt,
        )
        if not planned:
            reason = result.reason if not result.finished else "the product manager added no ticket"
            return {"status": "failed", "failure": f"planning failed: {reason}", "plan_attempt": attempt}
        title = f"Plan: PRD and {len(planned)} tickets" + (f" (revision {attempt})" if attempt > 1 else "")
        sha, _ = self._commit(root, "product_manager", title, result, None, attempt)
        prd = PRD(path=PRD_PATH if (root / PRD_PATH).is_file() else "", tickets=planned)
        self.transcript.append("plan", role="product_manager", attempt=attempt, sha=sha, **prd.model_dump(mode="json"))
        return self._planned(state, planned, attempt)

    def _planned(self, state: CompanyState, planned: list[Ticket], attempt: int) -> CompanyState:
        dropped: dict[str, Ticket | None] = {t: None for t in state.get("tickets", {}) if t not in {p.id for p in planned}}
        return {
            "tickets": {**dropped, **{t.id: t for t in planned}},  # type: ignore[dict-item]
            "plan_attempt": attempt,
            "rejected": False,
        }

    def _recorded_plan(self, attempt: int) -> PRD | None:
        plans = [e for e in read_events(self.transcript.path) if e.kind == "plan" and e.data.get("attempt") == attempt]
        return PRD.model_validate(plans[-1].data) if plans else None

    # -- approval gates: their own nodes, since a node re-runs from its start on resume

    def approve_plan(self, state: CompanyState) -> CompanyState:
        if "plan" not in self.settings.approve or state.get("status") == "failed":
            return {"rejected": False}
        tickets = sorted(state.get("tickets", {}).values(), key=_order)
        summary = _read(self.workspace.repo_dir, PRD_PATH) + "\n\nTickets:\n" + "\n".join(
            f"- {t.id}: {t.title}" + (f" (after {', '.join(t.depends_on)})" if t.depends_on else "") for t in tickets
        )
        return self._gate("plan", summary)

    def approve_deploy(self, state: CompanyState) -> CompanyState:
        if "deploy" not in self.settings.approve:
            return {"rejected": False}
        merged = [t for t in sorted(state.get("tickets", {}).values(), key=_order) if t.status == TicketStatus.MERGED]
        summary = _read(self.workspace.repo_dir, "RELEASE_NOTES.md") + (
            f"\n\n{RELEASE_VERSION} would tag main at {self.workspace.head()[:12]} with: "
            + ", ".join(t.id for t in merged)
        )
        return self._gate("deploy", summary)

    def _gate(self, gate: str, summary: str) -> CompanyState:
        answer = interrupt({"gate": gate, "summary": summary})
        decision = ApprovalDecision.model_validate(answer)
        self.transcript.append(
            "approval", gate=gate, decision=decision.decision, comment=decision.comment, by=decision.by, at=decision.at
        )
        rejected = decision.decision == "reject"
        return {"rejected": rejected, "feedback": decision.comment if rejected else ""}

    def dispatch(self, state: CompanyState) -> CompanyState:
        tickets = state.get("tickets", {})
        updates: dict[str, Ticket] = {}
        for t in sorted(tickets.values(), key=_order):
            if t.status != TicketStatus.TODO:
                continue
            stuck = [d for d in t.depends_on if tickets[d].status in (TicketStatus.FAILED, TicketStatus.BLOCKED)]
            if stuck:
                updates[t.id] = t.model_copy(
                    update={"status": TicketStatus.BLOCKED, "failure_reason": f"depends on {', '.join(stuck)}, which did not land"}
                )
        ready = sorted(
            (
                t for t in tickets.values()
                if t.id not in updates and t.status == TicketStatus.TODO
                and all(tickets[d].status == TicketStatus.MERGED for d in t.depends_on)
            ),
            # Tickets others wait on go first, so dependants are not left for a last,
            # mostly idle round.
            key=lambda t: (-_dependants(t.id, tickets), _order(t)),
        )[: self.settings.max_parallel]
        if ready:
            # Main's first verdict finds its sandbox started (a run stopped at its plan starts none).
            self.verdicts.prepare("verdict:main")
        for t in ready:
            path = self.workspace.worktree(t.id)
            updates[t.id] = t.model_copy(update={"status": TicketStatus.IN_PROGRESS})
            self._node("dispatch", ticket=t.id, worktree=str(path))
        for t in updates.values():
            if t.status == TicketStatus.BLOCKED:
                self.transcript.append("ticket.blocked", ticket=t.id, reason=t.failure_reason)
        return {"tickets": updates}

    def route_dispatch(self, state: CompanyState) -> list[Send] | str:
        tickets = state.get("tickets", {})
        started = [
            Send("ticket", {"ticket": t, "context_files": self._merged_files(t.depends_on, tickets)})
            for t in sorted(tickets.values(), key=_order)
            if t.status == TicketStatus.IN_PROGRESS
        ]
        if started:
            return started
        return "deployer" if any(t.status == TicketStatus.MERGED for t in tickets.values()) else "report"

    def _merged_files(self, ids: list[str], tickets: dict[str, Ticket]) -> list[str]:
        """What the merges of these tickets brought into main: the context a dependant builds on."""
        files: set[str] = set()
        for d in ids:
            if sha := tickets[d].merge_sha:
                files.update(self.workspace.files_between(f"{sha}^1", sha))
        return sorted(files)

    # -- the ticket pipeline (runs once per attempt, in parallel) ----------

    def engineer(self, state: TicketState) -> TicketState:
        ticket = state["ticket"].model_copy(update={"attempts": state["ticket"].attempts + 1, "put_back": []})
        root = self.workspace.worktree_path(ticket.id)
        self._node("engineer", ticket=ticket.id, attempt=ticket.attempts)
        if self._already_done("engineer", f"ticket/{ticket.id}", ticket.id, ticket.attempts):
            return {"ticket": ticket}
        # Start the sandbox now; it is ready by the time the engineer's first answer is.
        self.sandboxes.prepare(ticket.id, root)
        raised: list[Dispute] = []
        tools = [
            *self._file_tools(root, "engineer"), self._shell(ticket.id, root, "engineer"),
            DisputeTest(raised, disputes.dispute_maker(self.transcript, ticket)),
        ]
        prompt = prompts.engineer_prompt(ticket, *relevant_files(root, ticket, state.get("context_files", [])))
        result = self._agent("engineer", tools, ticket.id, prompt, ticket.id, ticket.attempts)
        ticket = ticket.model_copy(update={"disputes": [*ticket.disputes, *raised]})
        ticket, lost = self._ticket_commit(
            ticket, "engineer", f"{ticket.id}: {ticket.title} (attempt {ticket.attempts})", result
        )
        return {"ticket": ticket, "lost": lost or ""}

    def tester(self, state: TicketState) -> TicketState:
        ticket = state["ticket"]
        root = self.workspace.worktree_path(ticket.id)
        self._node("tester", ticket=ticket.id, attempt=ticket.attempts)
        # The verdict's fresh sandboxes start while the tester works.
        self.verdicts.prepare(f"verdict:{ticket.id}")
        self.verdicts.prepare(f"base:{ticket.id}")
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
            ticket, *relevant_files(root, ticket, state.get("context_files", [])), open_disputes
        )
        result = self._agent("tester", tools, ticket.id, prompt, ticket.id, ticket.attempts)
        ticket = disputes.merged(ticket, ruled)
        ticket, lost = self._ticket_commit(ticket, "tester", f"{ticket.id}: tests (attempt {ticket.attempts})", result)
        # Nothing runs in the roles' sandbox after this: the verdict has sandboxes of its own.
        self.sandboxes.release(ticket.id)
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
        session = 1 + sum(1 for e in read_events(self.transcript.path) if e.kind == "node" and e.ticket == ticket.id
                          and e.data.get("node") == "arbitrate" and e.data.get("attempt") != ticket.attempts)
        self._agent("product_manager", tools, ticket.id, prompts.arbitration_prompt(ticket, pending), ticket.id, session)
        return {"ticket": disputes.merged(ticket, ruled)}

    def verdict(self, state: TicketState) -> TicketState:
        ticket = state["ticket"]
        self.sandboxes.release(ticket.id)
        if wrong := disputes.overturned(ticket):
            self.verdicts.discard(f"verdict:{ticket.id}")
            self.verdicts.discard(f"base:{ticket.id}")
            failure = (
                "The product manager ruled that these tests contradict the ticket; the tester must change them:\n"
                + disputes.describe(wrong)
            )
            ticket = self._after_failure(ticket, failure, "its tests were ruled to contradict it")
            return {"ticket": ticket, "tickets": {ticket.id: ticket}}
        if state.get("lost"):
            self.verdicts.discard(f"verdict:{ticket.id}")
            self.verdicts.discard(f"base:{ticket.id}")
            ticket = self._after_failure(ticket, state["lost"], "its worktree was over its limits")
            return {"ticket": ticket, "tickets": {ticket.id: ticket}}
        base = self.workspace.merge_base(ticket.id)
        expect = self.verdicts.main_passing(base)
        # The check of the tests on the base runs beside the verdict, in its own fresh sandbox:
        # it is needed whenever the verdict passes, and it is off the critical path that way.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="base-check") as pool:
            on_base = pool.submit(
                self.verdicts.run, f"base:{ticket.id}", base, ticket=ticket.id,
                layers=[(f"ticket/{ticket.id}", self.guard.is_test_file)],
            )
            report = self.verdicts.run(f"verdict:{ticket.id}", f"ticket/{ticket.id}", ticket=ticket.id, expect=expect)
            base_report = on_base.result()
        if report.passed:
            report = self._tests_test(ticket, report, base, expect, base_report)
        self.transcript.append(
            "verdict", ticket=ticket.id, attempt=ticket.attempts, put_back=ticket.put_back,
            **report.model_dump(exclude={"output_tail", "ticket"}),
        )
        if report.passed:
            ticket = ticket.model_copy(update={"status": TicketStatus.PASSED, "last_failure": None})
        else:
            ticket = self._after_failure(ticket, _failure_text(report, ticket.put_back), "its verdict fails")
        return {"ticket": ticket, "tickets": {ticket.id: ticket}}

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

    # -- integration, release, report ---------------------------------------

    def integrate(self, state: CompanyState) -> CompanyState:
        passed = [t for t in sorted(state.get("tickets", {}).values(), key=_order) if t.status == TicketStatus.PASSED]
        if len(passed) > 1 and (batch := self._integrate_batch(passed)) is not None:
            return {"tickets": batch}
        return {"tickets": {t.id: self._integrate_one(t) for t in passed}}

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
        self.workspace.remove_worktree(ticket.id)
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

    def deployer(self, state: CompanyState) -> CompanyState:
        attempt = state.get("release_attempt", 0) + 1
        self._node("deployer", attempt=attempt)
        # What was integrated: the final verdict may lose no test that passed here.
        integrated = state.get("integrated_sha") or self.workspace.head()
        if self._already_done("deployer", MAIN, None, attempt):
            return {"release_attempt": attempt, "rejected": False, "integrated_sha": integrated}
        tickets = sorted(state.get("tickets", {}).values(), key=_order)
        merged = [t for t in tickets if t.status == TicketStatus.MERGED]
        unfinished = [t for t in tickets if t.status != TicketStatus.MERGED]
        root = self.workspace.repo_dir
        feedback = state.get("feedback") if state.get("rejected") else None
        result = self._agent(
            "deployer", self._file_tools(root, "deployer"), "release",
            prompts.release_prompt(RELEASE_VERSION, merged, unfinished, feedback), attempt=attempt,
        )
        self._commit(root, "deployer", f"Release notes for {RELEASE_VERSION}", result, None, attempt)
        return {"release_attempt": attempt, "rejected": False, "integrated_sha": integrated}

    def release(self, state: CompanyState) -> CompanyState:
        """Tag the exact commit whose final verdict (and hidden acceptance tests) passed; otherwise no tag."""
        event_id = self._node("release")
        sha = self.workspace.head()
        final = self._main_verdict(state.get("integrated_sha") or sha, None)
        self.transcript.append("final.suite", **final.model_dump(exclude={"output_tail", "ticket"}))
        if not final.passed:
            return {"status": "failed", "failure": f"no release: the final suite failed on {sha[:12]}: {final.reason}"}
        accepted, total, failure = self._acceptance(sha)
        if failure and not self.settings.acceptance_tags_anyway:
            return {"status": "failed", "failure": f"no release: {failure}"}
        head = self.transcript.head
        # The tag also anchors the transcript in git, apart from the run folder.
        anchor = f"\n\nTranscript head: {head.seq} {head.hash}" if head else ""
        tagged = self.workspace.tag(
            RELEASE_VERSION, f"Release {RELEASE_VERSION}{anchor}", self._prov("deployer", event_id), ref=sha
        )
        self.transcript.append("git.tag", role="deployer", tag=RELEASE_VERSION, sha=tagged, cause=event_id)
        notes = "RELEASE_NOTES.md" if (self.workspace.repo_dir / "RELEASE_NOTES.md").is_file() else ""
        release = Release(
            tag=RELEASE_VERSION, sha=tagged, notes_path=notes, suite_tests=final.tests,
            acceptance_passed=accepted, acceptance_total=total,
        )
        return {"release": release, **({"failure": failure} if failure else {})}

    def _acceptance(self, sha: str) -> tuple[int | None, int | None, str | None]:
        """(passed, total, why they failed) of the hidden acceptance tests on sha; Nones without any."""
        folder = self.settings.acceptance
        if folder is None:
            return None, None, None
        # The product's code only: no test file or runner configuration a role wrote.
        # Without any file that configures the runner: not the tester's, nor pyproject.toml's or
        # setup.cfg's sections (which a parser difference or a link could hide from the guard).
        report = self.verdicts.run(
            "acceptance:main", sha, ticket=None, extra=folder,
            exclude=lambda p: self.guard.is_test_file(p) or p in ACCEPTANCE_HIDES or p.split("/", 1)[0] == EXTRA_DIR,
        )
        missing = missing_acceptance(folder, report.passed_ids)
        if report.passed and (missing or report.skipped):
            shown = ", ".join(missing[:10]) or f"{report.skipped} skipped"
            report = report.model_copy(update={"passed": False, "missing": missing,
                                               "reason": f"acceptance tests did not pass: {shown}"})
        self.transcript.append("acceptance", **report.model_dump(exclude={"output_tail", "ticket", "passed_ids"}))
        passed = len(report.passed_ids)
        why = None if report.passed else f"hidden acceptance tests failed ({passed} of {report.tests} passed): {report.reason}"
        return passed, report.tests, why

    def report(self, state: CompanyState) -> CompanyState:
        tickets = state.get("tickets", {}).values()
        if state.get("status") == "failed":
            status = "failed"
        elif tickets and all(t.status == TicketStatus.MERGED for t in tickets):
            status = "done"
        else:
            status = "partial" if any(t.status == TicketStatus.MERGED for t in tickets) else "failed"
        self.verdicts.close()
        self.sandboxes.close()
        release = state.get("release")
        self.transcript.append(
            "run.finished", status=status, failure=state.get("failure"),
            release=release.model_dump() if release else None,
            tickets={t.id: t.status.value for t in tickets},
        )
        return {"status": status}


def _failure_text(report: TestReport, put_back: list[str]) -> str:
    text = f"The orchestrator's verdict failed: {report.reason}.\n`{_short(report.command)}` output:\n{report.output_tail}"
    if put_back:
        text += (
            "\n\nThese changes outside your territory were put back (the committed tree has none of them): "
            + ", ".join(put_back)
        )
    return text


def _short(command: str) -> str:
    return "pytest" if "pytest" in command else command


_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*\.\w+")


def relevant_files(root: Path, ticket: Ticket, context: list[str]) -> tuple[list[str], int]:
    """Files the ticket names or builds on (that exist), and how many files there are."""
    every = set(Confined(root).files())  # all of them: a listing for the model stops at a limit
    named = set(_PATH.findall(" ".join([ticket.title, ticket.description, *ticket.acceptance_criteria])))
    return sorted((named | set(context)) & every), len(every)


def _dependants(ticket_id: str, tickets: dict[str, Ticket]) -> int:
    """How many tickets wait on this one, directly or through others."""
    waiting, frontier = set(), {ticket_id}
    while frontier:
        frontier = {t.id for t in tickets.values() if set(t.depends_on) & frontier} - waiting
        waiting |= frontier
    return len(waiting)


def _read(root: Path, relative: str, limit: int = 4000) -> str:
    """A file the roles wrote, opened as the file tools open it: never through a link."""
    try:
        fd = Confined(root).open(relative)[0]
    except ToolError as e:
        return f"({relative} could not be read: {e})"
    with open(fd, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def _order(t: Ticket) -> tuple[int, str]:
    number = t.id.rsplit("-", 1)[-1]
    return (int(number) if number.isdigit() else 0, t.id)


def build_graph(company: Company) -> StateGraph:
    pipeline = StateGraph(TicketState, output_schema=TicketOutput)
    pipeline.add_node("engineer", company.engineer)
    pipeline.add_node("tester", company.tester)
    pipeline.add_node("arbitrate", company.arbitrate)
    pipeline.add_node("verdict", company.verdict)
    pipeline.add_edge(START, "engineer")
    pipeline.add_edge("engineer", "tester")
    pipeline.add_edge("tester", "arbitrate")
    pipeline.add_edge("arbitrate", "verdict")
    pipeline.add_edge("verdict", END)

    graph = StateGraph(CompanyState)
    graph.add_node("intake", company.intake)
    graph.add_node("product_manager", company.product_manager)
    graph.add_node("dispatch", company.dispatch)
    graph.add_node("ticket", pipeline.compile())
    graph.add_node("integrate", company.integrate)
    graph.add_node("approve_plan", company.approve_plan)
    graph.add_node("deployer", company.deployer)
    graph.add_node("approve_deploy", company.approve_deploy)
    graph.add_node("release", company.release)
    graph.add_node("report", company.report)
    graph.add_edge(START, "intake")
    graph.add_edge("intake", "product_manager")
    graph.add_edge("product_manager", "approve_plan")
    graph.add_conditional_edges(
        "approve_plan",
        lambda s: "report" if s.get("status") == "failed" else "product_manager" if s.get("rejected") else "dispatch",
        ["dispatch", "product_manager", "report"],
    )
    graph.add_conditional_edges("dispatch", company.route_dispatch, ["ticket", "deployer", "report"])
    graph.add_edge("ticket", "integrate")
    graph.add_edge("integrate", "dispatch")
    graph.add_edge("deployer", "approve_deploy")
    graph.add_conditional_edges(
        "approve_deploy", lambda s: "deployer" if s.get("rejected") else "release", ["deployer", "release"]
    )
    graph.add_edge("release", "report")
    graph.add_edge("report", END)
    return graph


def compile_graph(company: Company, checkpointer: object) -> CompiledStateGraph:
    return build_graph(company).compile(checkpointer=checkpointer)  # type: ignore[arg-type]

