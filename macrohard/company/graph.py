"""The company as a LangGraph StateGraph (see the data flow in ARCHITECTURE.md).

Facts come from the orchestrator, never from a model's word: a ticket passes when the
orchestrator's own verdict (company/verdict.py) passes on its branch and its new tests
fail without it; it is merged when main's verdict stays green; a release is tagged on
the commit whose final verdict (and hidden acceptance tests) passed and whose product
image built and passed its smoke check (company/deploy.py). Each role's
changes outside its territory are put back at its commit (company/territories.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send, interrupt

from macrohard.agent.loop import AgentLoop, AgentResult
from macrohard.agent.tools import (
    Confined, EditFile, Finish, ListFiles, ReadFile, RunShell, Tool, ToolError, WriteFile,
)
from macrohard.company.environment import ProductEnvironment
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.state import CompanyState, TicketOutput, TicketState
from macrohard.company.territories import TerritoryGuard
from macrohard.company.handback import HandbackStage
from macrohard.company.integration import IntegrationStage
from macrohard.company.judge import JudgeStage
from macrohard.company.pipeline import TicketPipeline
from macrohard.company.planning import PRD_PATH, PlanningStage
from macrohard.company.release import ReleaseStage, _order
from macrohard.company.verdict import Verdicts
from macrohard.config import Settings
from macrohard.control import RunControl
from macrohard.llm.base import ChatModel
from macrohard.models import ApprovalDecision, Spec, Ticket, TicketStatus
from macrohard.roles import Role
from macrohard.sandbox.base import ExecResult, ProductImages
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace, Provenance

MAIN = "main"


@dataclass
class Company(PlanningStage, TicketPipeline, JudgeStage, IntegrationStage, ReleaseStage, HandbackStage):
    """Everything the nodes need; the graph's state holds only ids and statuses."""

    run_id: str
    spec: Spec
    settings: Settings
    roles: dict[str, Role]
    model_for: Callable[[str], ChatModel]
    transcript: TranscriptLog
    workspace: GitWorkspace
    sandboxes: RunSandboxes
    images: ProductImages  # where the release builds and smoke-checks the product's image
    control: RunControl | None = None  # budgets and pause requests, asked before every model call
    # Whether an earlier process drove this run: only then can a node find its own
    # work already committed (nothing re-runs a node within one process).
    resumed: bool = False
    # The run started from a repository with history (the user's, or an earlier run's):
    # its suite runs first, and the product manager gets a map of the code.
    from_source: bool = False

    def __post_init__(self) -> None:
        self.guard = TerritoryGuard(self.roles, self.workspace, self.transcript)
        self.environment = ProductEnvironment(self.settings, self.sandboxes.provider, self.workspace, self.transcript)
        self.sandboxes.extras = self.environment.extras
        self.verdicts = Verdicts(self.settings, self.workspace, self.sandboxes, self.transcript, self.guard.is_test_file,
                                 self.environment)

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
        # finish is how every session ends, whether or not the role file lists it.
        allowed = [t for t in tools if t.name in role.tools or t.name == Finish.name]
        model = self.settings.model_for(role_name, role.model)
        loop = AgentLoop(
            role, self.model_for(role_name), allowed, self.transcript,
            task=task, ticket=ticket, attempt=attempt, control=self.control,
            context_window=model.context_window, max_tokens=model.max_tokens,
        )
        result = loop.run(prompt)
        self.transcript.append(
            "agent.finished", role=role_name, ticket=ticket, task=task, finished=result.finished,
            outcome=result.outcome.value, reason=result.reason, summary=result.summary, steps=result.steps,
            usage=result.usage.model_dump(),
        )
        return result

    def _file_tools(self, root: Path, role: str) -> list[Tool]:
        fs = Confined(root, refuse_write=lambda path: self.guard.refusal(role, path))
        return [ListFiles(fs), ReadFile(fs), WriteFile(fs), EditFile(fs)]

    def _shell(self, key: str, root: Path, role: str) -> RunShell:
        limit = self.settings.sandbox.timeout_s

        def execute(command: str, timeout: float | None) -> ExecResult:
            # The packages the manifest declares now are in place before the command runs.
            self.environment.sync(key, root, role=role, ticket=None if key == MAIN else key)
            # The model may ask for less time than the configured limit, never more.
            return self.sandboxes.exec(key, root, command, timeout_s=min(timeout or limit, limit), role=role)[0]

        return RunShell(execute, self.environment.stack.environment)

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

    # -- company nodes -----------------------------------------------------

    def intake(self, state: CompanyState) -> CompanyState:
        sha = self.workspace.init()
        self._node("intake", spec_title=self.spec.title, spec_sha256=self.spec.sha256, main=sha)
        if self.from_source and any(self.guard.is_test_file(p) for p in self.workspace.tree_files(sha)):
            # Baseline first: what already fails at the base is known, not any ticket's doing.
            report = self.verdicts.baseline(sha)
            self.transcript.append("baseline", **report.model_dump(exclude={"output_tail", "ticket"}))
        return {}

    # -- approval gates: their own nodes, since a node re-runs from its start on resume

    def approve_plan(self, state: CompanyState) -> CompanyState:
        if "plan" not in self.settings.approve or state.get("status") == "failed":
            return {"rejected": False}
        tickets = sorted(state.get("tickets", {}).values(), key=_order)
        # Each ticket with what it must do: the criteria are what its verdict and tests are held to.
        summary = _read(self.workspace.repo_dir, PRD_PATH) + "\n\nTickets:\n" + "\n".join(
            f"- {t.id}: {t.title}" + (f" (after {', '.join(t.depends_on)})" if t.depends_on else "")
            + "".join(f"\n    - {c}" for c in t.acceptance_criteria) for t in tickets
        )
        return self._gate("plan", summary)

    def approve_deploy(self, state: CompanyState) -> CompanyState:
        if "deploy" not in self.settings.approve:
            return {"rejected": False}
        merged = [t for t in sorted(state.get("tickets", {}).values(), key=_order) if t.status == TicketStatus.MERGED]
        version = self._release_base(state).version
        summary = _read(self.workspace.repo_dir, "RELEASE_NOTES.md") + (
            f"\n\n{version} would tag main at {self.workspace.head()[:12]} with: "
            + ", ".join(t.id for t in merged)
            + f"\nonce its image {self._image_name(version)} builds and passes its smoke check."
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
            # Until their engineers' calls are under way, the new tickets are the critical path.
            self.sandboxes.before_calls([t.id for t in ready], step=True)
        for t, path in zip(ready, self.workspace.worktrees([t.id for t in ready])):
            updates[t.id] = t.model_copy(update={"status": TicketStatus.IN_PROGRESS})
            self._node("dispatch", ticket=t.id, worktree=str(path))
        if ready:
            # After the worktrees, which the next roles wait for; containers starting and stopping
            # would only slow git down. Main's first verdict finds its sandbox started (a run
            # stopped at its plan starts none), and the step's model calls leave the CPU room to
            # stop what earlier steps released.
            self.verdicts.prepare("verdict:main")
            self.sandboxes.flush()
        for t in updates.values():
            if t.status == TicketStatus.BLOCKED:
                self.transcript.append("ticket.blocked", ticket=t.id, reason=t.failure_reason)
        return {"tickets": updates}

    def route_dispatch(self, state: CompanyState) -> list[Send] | str:
        """One step: a pipeline per ticket whose roles start now, beside the judge of those
        whose roles are done. The step's branches run side by side."""
        tickets = state.get("tickets", {})
        ordered = sorted(tickets.values(), key=_order)
        sends = [
            Send("ticket", {"ticket": t, "context_files": self._merged_files(t.depends_on, tickets)})
            for t in ordered if t.status == TicketStatus.IN_PROGRESS
        ]
        waiting = {t.id: t for t in ordered if t.status in (TicketStatus.AWAITING_VERDICT, TicketStatus.PASSED)}
        if waiting:
            sends.append(Send("judge", {"tickets": waiting, "judge_alone": not sends}))
        if sends:
            return sends
        return "deployer" if any(t.status == TicketStatus.MERGED for t in tickets.values()) else "report"

    def _merged_files(self, ids: list[str], tickets: dict[str, Ticket]) -> list[str]:
        """What the merges of these tickets brought into main: the context a dependant builds on."""
        files: set[str] = set()
        for d in ids:
            if sha := tickets[d].merge_sha:
                files.update(self.workspace.files_between(f"{sha}^1", sha))
        return sorted(files)

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


def build_graph(company: Company) -> StateGraph:
    pipeline = StateGraph(TicketState, output_schema=TicketOutput)
    pipeline.add_node("engineer", company.engineer)
    pipeline.add_node("tester", company.tester)
    pipeline.add_node("arbitrate", company.arbitrate)
    pipeline.add_node("handoff", company.handoff)
    pipeline.add_edge(START, "engineer")
    pipeline.add_edge("engineer", "tester")
    pipeline.add_edge("tester", "arbitrate")
    pipeline.add_edge("arbitrate", "handoff")
    pipeline.add_edge("handoff", END)

    graph = StateGraph(CompanyState)
    graph.add_node("intake", company.intake)
    graph.add_node("product_manager", company.product_manager)
    graph.add_node("dispatch", company.dispatch)
    graph.add_node("ticket", pipeline.compile())
    graph.add_node("judge", company.judge)
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
    graph.add_conditional_edges("dispatch", company.route_dispatch, ["ticket", "judge", "deployer", "report"])
    graph.add_edge("ticket", "dispatch")
    graph.add_edge("judge", "dispatch")
    graph.add_edge("deployer", "approve_deploy")
    graph.add_conditional_edges(
        "approve_deploy", lambda s: "deployer" if s.get("rejected") else "release", ["deployer", "release"]
    )
    # A failed image build or smoke check goes back to the deployer while it has attempts left.
    graph.add_conditional_edges(
        "release", lambda s: "deployer" if s.get("ship_failure") and s.get("status") != "failed" else "report",
        ["deployer", "report"],
    )
    graph.add_edge("report", END)
    return graph


def compile_graph(company: Company, checkpointer: object) -> CompiledStateGraph:
    return build_graph(company).compile(checkpointer=checkpointer)  # type: ignore[arg-type]

