"""Planning: the product manager's node, and the checks a plan must pass to be built.

A mixin of Company (company/graph.py). A plan is accepted only from a session that
finished (the product manager called finish) with a plan that passes the checks: at
least one ticket, no more than `max_tickets`, every title, description and criterion
saying something. Its finish is refused while the plan fails them, so the product
manager can fix it in the same session. Tickets that may run at the same time and name
the same files get an implied dependency (the later one waits for the earlier), so a
predictable conflict does not cost a whole attempt. A session that ends unfinished is
retried, told why; when no session finishes, the run stops resumable with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel

from macrohard.agent.outcome import AgentResult
from macrohard.agent.tools import AddTicket, DescribeProduct, FinishPlan
from macrohard.company import prompts
from macrohard.company.codebase import codebase_map
from macrohard.company.parts import CompanyParts
from macrohard.company.state import CompanyState
from macrohard.errors import MacrohardError
from macrohard.models import PRD, RunSpec, TestReport, Ticket
from macrohard.stacks import stack_named
from macrohard.workspace.provenance import MAIN

PRD_PATH = "docs/PRD.md"  # where roles/product_manager.md asks for the PRD
PM = "product_manager"
# What a ticket's text names as a file: a path with a folder, or a name with a source-like extension.
_NAMED = re.compile(r"(?<![\w/.-])(?:[\w.-]+/)*[\w-][\w.-]*\.(?:py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|java|rb|c|h|cc|cpp"
                    r"|hpp|cs|php|sh|md|rst|txt|toml|json|ya?ml|cfg|ini|html|css|sql|csv)\b")


class PlanningFailed(MacrohardError):
    """No planning session produced a plan that can be built; the run can be resumed to try again."""


class ImpliedDependency(BaseModel):
    ticket: str
    on: str
    files: list[str]


def named_files(ticket: Ticket) -> set[str]:
    """The files a ticket's text names."""
    return set(_NAMED.findall(" ".join([ticket.title, ticket.description, *ticket.acceptance_criteria])))


def plan_problems(tickets: list[Ticket], max_tickets: int) -> list[str]:
    """Why this plan cannot be built as it stands (empty when it can)."""
    problems = []
    if not tickets:
        problems.append("the plan has no ticket: add one with add_ticket for each unit of work")
    if len(tickets) > max_tickets:
        problems.append(f"the plan has {len(tickets)} tickets, more than the {max_tickets} allowed")
    for t in tickets:
        if not t.title.strip() or not t.description.strip():
            problems.append(f"{t.id} needs a title and a description")
        if not any(c.strip() for c in t.acceptance_criteria) or any(not c.strip() for c in t.acceptance_criteria):
            problems.append(f"{t.id} has an empty acceptance criterion")
    return problems


def imply_dependencies(
    tickets: list[Ticket], changeable: Callable[[str], bool] = lambda path: True
) -> tuple[list[Ticket], list[ImpliedDependency]]:
    """The tickets with a dependency added wherever two that could run at once name the same files.

    Only files `changeable` says a ticket's roles may change count: two tickets that both
    cite the PRD do not collide.
    """
    ordered = list(tickets)
    implied: list[ImpliedDependency] = []
    files = {t.id: {f for f in named_files(t) if changeable(f)} for t in ordered}
    for i, later in enumerate(ordered):
        for earlier in ordered[:i]:
            shared = sorted(files[later.id] & files[earlier.id])
            if shared and not _reaches(later.id, earlier.id, ordered):
                later = later.model_copy(update={"depends_on": [*later.depends_on, earlier.id]})
                ordered[i] = later
                implied.append(ImpliedDependency(ticket=later.id, on=earlier.id, files=shared))
    return ordered, implied


def _reaches(start: str, goal: str, tickets: list[Ticket]) -> bool:
    """Whether `start` already waits for `goal`, directly or through others."""
    by_id = {t.id: t for t in tickets}
    seen, frontier = set(), [start]
    while frontier:
        current = frontier.pop()
        if current == goal:
            return True
        if current not in seen and current in by_id:
            seen.add(current)
            frontier.extend(by_id[current].depends_on)
    return False


class PlanningStage(CompanyParts):

    def product_manager(self, state: CompanyState) -> CompanyState:
        done = max(state.get("plan_attempt", 0), self._plan_sessions())
        self._node(PM, attempt=done + 1)
        # A session that committed its plan just before the run was interrupted is not asked again.
        if done > state.get("plan_attempt", 0) and self._already_done(PM, MAIN, None, done) \
                and (prd := self._recorded_plan(done)):
            return self._planned(state, prd.tickets, done, prd.run)
        first = done + 1
        feedback = state.get("feedback") if state.get("rejected") else None
        unfinished: str | None = None
        for attempt in range(first, first + self.settings.max_attempts):
            planned: list[Ticket] = []
            described: list[RunSpec] = []
            result = self._plan_session(planned, described, attempt, feedback, unfinished)
            if result.finished:
                return self._accept(state, planned, described[0] if described else None, result, attempt)
            unfinished = result.reason
            self.transcript.append("plan.unfinished", role=PM, attempt=attempt, outcome=result.outcome.value,
                                   reason=result.reason, tickets=len(planned))
        raise PlanningFailed(
            f"planning failed: the product manager did not finish a plan in {self.settings.max_attempts} sessions; "
            f"the last ended: {unfinished}",
            "check the model and the product manager's role; `macrohard resume` tries again",
        )

    def _plan_session(
        self, planned: list[Ticket], described: list[RunSpec], attempt: int, feedback: str | None, unfinished: str | None
    ) -> AgentResult:
        limit = self.settings.max_tickets

        def check() -> str | None:
            problems = plan_problems(planned, limit)
            return "; ".join(problems) if problems else None

        root = self.workspace.repo_dir
        fixed = stack_named(self.settings.stack) if self.settings.stack else None
        prompt = prompts.plan_prompt(self.spec, feedback, unfinished, self._codebase(), prompts.stacks_block(fixed))
        tools = [*self._file_tools(root, PM), AddTicket(planned, limit), DescribeProduct(described, self.settings.stack),
                 FinishPlan(check)]
        return self._agent(PM, tools, "plan", prompt, attempt=attempt)

    def _accept(
        self, state: CompanyState, planned: list[Ticket], run: RunSpec | None, result: AgentResult, attempt: int
    ) -> CompanyState:
        tickets, implied = imply_dependencies(
            planned, lambda path: self.guard.allows("engineer", path) or self.guard.allows("tester", path)
        )
        root = self.workspace.repo_dir
        title = f"Plan: PRD and {len(tickets)} tickets" + (f" (revision {attempt})" if attempt > 1 else "")
        sha, _ = self._commit(root, PM, title, result, None, attempt)
        prd = PRD(path=PRD_PATH if (root / PRD_PATH).is_file() else "", tickets=tickets, run=run)
        self.transcript.append("plan", role=PM, attempt=attempt, sha=sha, implied=[d.model_dump() for d in implied],
                               **prd.model_dump(mode="json"))
        return self._planned(state, tickets, attempt, run)

    def _codebase(self) -> str | None:
        """A map of the code the plan changes, when the run started from one (else None)."""
        if not self.from_source:
            return None
        baselines = [e for e in self.transcript.events() if e.kind == "baseline"]
        baseline = TestReport.model_validate({"ticket": None, "output_tail": "", **baselines[-1].data}) if baselines else None
        sha = self.workspace.head()
        return codebase_map(self.workspace, sha, baseline, self.settings.test_command, self.guard.is_test_file)

    def _plan_sessions(self) -> int:
        """Planning sessions that ended so far, also those of a process that failed or was killed."""
        return sum(1 for e in self.transcript.events()
                   if e.kind == "agent.finished" and e.role == PM and e.data.get("task") == "plan")

    def _planned(
        self, state: CompanyState, planned: list[Ticket], attempt: int, run: RunSpec | None = None
    ) -> CompanyState:
        # The stack is fixed with the plan: every ticket's sandbox starts from its image.
        before = self.environment.stack.name
        stack = self.environment.choose(run.stack if run else None)
        if stack.name != before:
            self.sandboxes.release(MAIN)  # a sandbox of main started on the former stack's image
        dropped: dict[str, Ticket | None] = {t: None for t in state.get("tickets", {}) if t not in {p.id for p in planned}}
        return {
            "tickets": {**dropped, **{t.id: t for t in planned}},  # type: ignore[dict-item]
            "plan_attempt": attempt,
            "rejected": False,
            # How the product runs, for the release's smoke check; a stack's default stands for "none".
            "run_spec": (run or RunSpec(default=True)).model_copy(update={"stack": stack.name}),
        }

    def _recorded_plan(self, attempt: int) -> PRD | None:
        plans = [e for e in self.transcript.events() if e.kind == "plan" and e.data.get("attempt") == attempt]
        return PRD.model_validate(plans[-1].data) if plans else None
