"""Start, resume and answer a company run: check inputs, lay out the run folder, drive the graph.

A run stops in one of these states, recorded in run.json: done, partial (some tickets
failed or were blocked), failed, paused (a budget was reached or the user asked),
awaiting_approval (a gate waits for a person), or running. A run whose graph did not
reach its end (paused, awaiting_approval, crashed while running, failed on an error)
resumes from its last checkpoint; done and partial runs, and runs that failed in
planning, have ended.

The run folder's layout and records are in company/records.py; where its checkpoints
(and a copy of its record) live, SQLite in the folder or PostgreSQL, in company/storage.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from langgraph.types import Command

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.checkpoints import CHECKPOINT_TYPES
from macrohard.company.storage import RunStore, checkpoint_values, store_for
from macrohard.company.records import (
    RunPaths, RunRecord, RunSummary, TicketLine, load_record, load_spec, new_run_id, summarize,
)
from macrohard.company.failures import describe_failure, why_no_ticket_landed
from macrohard.company.graph import Company, compile_graph
from macrohard.company.sandboxes import RunSandboxes
from macrohard.config import ModelSettings, SandboxSettings, Settings
from macrohard.control import RunControl, RunPaused, Spent
from macrohard.errors import ConfigError
from macrohard.llm.base import ChatModel
from macrohard.llm.replay import ReplaySource
from macrohard.llm.scripted import ScriptedModel
from macrohard.models import ApprovalDecision, Budget, Spec, Ticket, current_user
from macrohard.redact import Redactor, strip_url, without_userinfo
from macrohard.roles import Role, default_roles_dir, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.sandbox.lifecycle import owner_id
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import Listener, TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace
from macrohard.workspace.source import CheckedSource, RepoSource, check_source, clone_source, drop_mirror

SCRATCH = ".sources"  # in the workspaces folder: local mirrors of repositories given by URL

# Called at a gate with its payload ({"gate", "summary"}); returns the person's decision,
# or None to leave the run waiting at the gate (the person went away without answering).
Decide = Callable[[dict[str, Any]], ApprovalDecision | None]


def role_models(
    settings: Settings, roles: dict[str, Role], factory: Callable[[ModelSettings], ChatModel]
) -> Callable[[str], ChatModel]:
    """Build one model per role up front, so a bad endpoint setting fails before any work."""
    unknown = sorted(set(settings.roles) - set(roles))
    if unknown:
        raise ConfigError(
            f"macrohard.toml configures unknown role {', '.join(unknown)}", f"roles are: {', '.join(sorted(roles))}"
        )
    models = {name: factory(settings.model_for(role.name, role.model)) for name, role in roles.items()}
    return models.__getitem__


def describe_models(settings: Settings, roles: dict[str, Role]) -> str:
    names = sorted({settings.model_for(role.name, role.model).model or "?" for role in roles.values()})
    return ", ".join(names) + (f" at {strip_url(settings.model.base_url)}" if settings.model.base_url else "")


class CompanyRun:
    """One run of the company: `create` a new one or `open` an existing one, then `execute`."""

    def __init__(
        self,
        paths: RunPaths,
        spec: Spec,
        settings: Settings,
        *,
        script: Path | None,
        model_factory: Callable[[ModelSettings], ChatModel] | None,
        record: RunRecord | None = None,
        allow_weaker_sandbox: bool = False,
        source: CheckedSource | None = None,
        replay: ReplaySource | None = None,
    ) -> None:
        self.allow_weaker_sandbox = allow_weaker_sandbox
        # Where the product starts when not from nothing: checked already, cloned at execute().
        self.source = source
        self._redactor: Redactor | None = None
        self.paths = paths
        self.run_id = paths.run_dir.name
        self.spec = spec
        # Absolute paths, so a run resumes the same from any folder.
        self.settings = settings.model_copy(
            update={"roles_dir": (settings.roles_dir or default_roles_dir()).resolve(), "workspaces": paths.run_dir.parent}
        )
        if self.settings.acceptance is not None:
            folder = self.settings.acceptance.resolve()
            if not folder.is_dir() or not any(folder.rglob("*.py")):
                raise ConfigError(
                    f"acceptance tests folder {self.settings.acceptance} does not exist or has no .py file",
                    "point --acceptance (or acceptance in macrohard.toml) at a folder of pytest files",
                )
            self.settings = self.settings.model_copy(update={"acceptance": folder})
        self.roles = load_roles(self.settings.roles_dir, known_tools=set(TOOL_NAMES))
        self.store: RunStore = store_for(self.settings.storage.url, paths)
        self.script = script.resolve() if script else None
        self.record = record
        self.replay = replay
        if replay is not None and not replay.forks:
            # Every answer comes from the recording: no script or endpoint is asked.
            self.script = None
            self.model_for, self.model_name = replay.models(None), replay.describe()
        elif script is not None:
            scripted = ScriptedModel.from_file(script, latency_s=self.settings.scripted_latency_s)
            self.model_for: Callable[[str], ChatModel] = lambda role: scripted
            self.model_name = f"scripted ({script})"
        elif model_factory is not None:
            self.model_for = role_models(self.settings, self.roles, model_factory)
            self.model_name = describe_models(self.settings, self.roles)
        else:
            raise ConfigError("no model configured", "pass a script, or set [model] in macrohard.toml")
        if replay is not None and replay.forks:
            self.replay = replay.model_copy(update={"live_model": replay.live_model or self.model_name})
            self.model_for, self.model_name = self.replay.models(self.model_for), self.replay.describe()
        unpriced = [m for m in self._model_names() if m not in self.settings.prices]
        if self.settings.budget.max_cost_usd is not None and unpriced:
            raise ConfigError(
                f"a cost budget needs a price for every model; none is set for {', '.join(unpriced)}",
                'add [prices."<model>"] input = ..., output = ... (USD per million tokens) to macrohard.toml',
            )

    def _model_names(self) -> list[str]:
        if self.script is not None:
            return ["scripted"]
        return sorted({self.settings.model_for(role.name, role.model).model or "" for role in self.roles.values()} - {""})

    @classmethod
    def create(
        cls,
        spec_path: Path,
        settings: Settings,
        *,
        script: Path | None = None,
        model_factory: Callable[[ModelSettings], ChatModel] | None = None,
        run_id: str | None = None,
        source: RepoSource | None = None,
        replay: ReplaySource | None = None,
    ) -> CompanyRun:
        """A new run; with `source`, on top of a repository's history (checked here, before anything is made)."""
        paths = RunPaths(run_dir=(settings.workspaces / (run_id or new_run_id())).resolve())
        spec = load_spec(spec_path)
        checked = check_source(source, settings.workspace, settings.workspaces / SCRATCH) if source else None
        return cls(paths, spec, settings, script=script, model_factory=model_factory, source=checked, replay=replay)

    @classmethod
    def open(
        cls,
        run_dir: Path,
        overrides: dict[str, Any] | None = None,
        *,
        model_factory: Callable[[ModelSettings], ChatModel] | None = None,
        allow_weaker_sandbox: bool = False,
    ) -> CompanyRun:
        """An existing run, with its recorded settings and model; `overrides` raise limits.

        run.json is not trusted for the sandbox: settings weaker than those the run
        started with (recorded in the hash-chained transcript) need allow_weaker_sandbox.
        """
        record = load_record(run_dir)
        data = dict(record.settings)
        data["budget"] = dict(data.get("budget") or {})  # type: ignore[call-overload]
        for key, value in (overrides or {}).items():
            if value is not None:
                (data["budget"] if key in Budget.model_fields else data)[key] = value  # type: ignore[index]
        settings = Settings.model_validate(data)
        script = Path(record.script) if record.script else None
        if script is not None and not script.is_file():
            raise ConfigError(f"the run's model script {script} is gone", "restore it to resume the run")
        paths = RunPaths(run_dir=run_dir.resolve())
        return cls(paths, load_spec(paths.spec), settings, script=script, model_factory=model_factory, record=record,
                   allow_weaker_sandbox=allow_weaker_sandbox, replay=record.replay)

    # -- driving -------------------------------------------------------------

    def execute(
        self,
        provider: SandboxProvider,
        on_event: Listener | None = None,
        *,
        decide: Decide | None = None,
        decision: ApprovalDecision | None = None,
        control_hook: Callable[[RunControl], None] | None = None,
    ) -> RunSummary:
        """Run from the start, or on from the last checkpoint for an opened run.

        `decide` answers gates as they come (a person at a terminal); without it the
        run stops as awaiting_approval. `decision` answers the gate an opened run is
        waiting at.
        """
        started = time.monotonic()
        resuming = self.record is not None
        self.store.check()  # an unreachable database is one error, before anything is made
        if self.record is None:
            self.paths.run_dir.mkdir(parents=True, exist_ok=False)
            self.paths.spec.write_text(self.spec.text)
            if self.source is not None:
                clone_source(self.source, self.paths.repo)
                drop_mirror(self.source, self.settings.workspaces / SCRATCH)
            self.record = RunRecord(
                run_id=self.run_id, spec_title=self.spec.title, spec_sha256=self.spec.sha256, model=self.model_name,
                script=str(self.script) if self.script else None, created_at=time.time(),
                settings=json.loads(self.settings.model_dump_json()), replay=self.replay,
                source=self.source.model_dump(exclude={"path"}) if self.source else None,
            )
        with _locked(self.paths):  # one process drives a run at a time
            return self._drive(provider, on_event, started, resuming, decide, decision, control_hook)

    def _drive(
        self,
        provider: SandboxProvider,
        on_event: Listener | None,
        started: float,
        resuming: bool,
        decide: Decide | None,
        decision: ApprovalDecision | None,
        control_hook: Callable[[RunControl], None] | None,
    ) -> RunSummary:
        record = self.record
        assert record is not None
        if resuming:
            self.check_resumable(decision)
            weaker = self._weaker_sandbox()
        key_variables = {self.settings.model_for(role.name, role.model).api_key_env for role in self.roles.values()}
        key_variables |= set(self.settings.secrets.env)
        self._redactor = Redactor.from_environment(os.environ, key_variables)
        transcript = TranscriptLog(self.paths.transcript, self.run_id, self._redactor)
        if on_event:
            transcript.subscribe(on_event)
        if transcript.repaired_bytes:
            transcript.append("transcript.repaired", dropped_bytes=transcript.repaired_bytes,
                              reason="a torn last line from a process that was killed mid-write")
        spent = self._spent_so_far() if resuming else Spent()
        control = RunControl(self.settings.budget, self.settings.prices, spent, record.active_s)
        if control_hook:
            control_hook(control)
        # Sandboxes a crashed process left behind (this run's or any other's) go first.
        orphans = provider.prune_orphans()
        if resuming:
            transcript.append(
                "run.resumed", previous_status=record.status, by=current_user(),
                removed_orphan_sandboxes=orphans, budget=self.settings.budget.model_dump(), spent=spent.model_dump(),
                sandbox=self.settings.sandbox.model_dump(), weaker_sandbox=weaker,
            )
        else:
            transcript.append(
                "run.started", spec_title=self.spec.title, spec_sha256=self.spec.sha256, model=self.model_name,
                removed_orphan_sandboxes=orphans, sandbox=self.settings.sandbox.model_dump(), source=record.source,
            )
        record.status, record.owner, record.paused_reason, record.awaiting = "running", owner_id(), None, None
        record.settings = json.loads(self.settings.model_dump_json())
        self._write(record)

        sandboxes = RunSandboxes(provider, transcript, self.run_id)

        def scrubbed(tree: Path, removed: list[str]) -> None:
            # A role planted a repository (or submodule file) for host git to act on.
            ticket = tree.name if tree.parent.name == "worktrees" else None
            transcript.append("worktree.scrubbed", ticket=ticket, removed=removed,
                              reason="nested git repositories and .gitmodules are removed before host git runs")

        workspace = GitWorkspace(self.paths.run_dir, self.settings.workspace, on_scrub=scrubbed)
        company = Company(
            run_id=self.run_id, spec=self.spec, settings=self.settings, roles=self.roles, model_for=self.model_for,
            transcript=transcript, workspace=workspace, sandboxes=sandboxes, images=provider.product_images(),
            control=control, resumed=resuming, from_source=record.source is not None,
        )
        state: dict[str, Any] = {}
        checkpoints = ExitStack()
        try:
            graph = compile_graph(company, checkpoints.enter_context(self.store.saver()))
            config = {
                "configurable": {"thread_id": self.run_id}, "recursion_limit": self.settings.recursion_limit,
                # A step's branches: the tickets whose roles work, and the judge beside them.
                # (LangGraph's default, from the number of cores, would run fewer at once.)
                "max_concurrency": self.settings.max_parallel + 1,
            }
            graph_input: Any = Command(resume=decision.model_dump()) if decision else (None if resuming else {})
            while True:
                state = graph.invoke(graph_input, config, durability="sync")
                gates = state.get("__interrupt__") or []
                if not gates:
                    record.status, record.failure = str(state.get("status", "failed")), state.get("failure")
                    if (release := state.get("release")) is not None:
                        record.release = release.model_dump(mode="json")
                    if record.status == "failed" and not record.failure:
                        record.failure = why_no_ticket_landed(state.get("tickets") or {})
                    break
                payload = dict(gates[0].value)
                transcript.append("approval.requested", gate=payload["gate"])
                answer = decide(payload) if decide is not None else None
                if answer is None:
                    record.status, record.awaiting = "awaiting_approval", payload
                    break
                graph_input = Command(resume=answer.model_dump())
        except RunPaused as e:
            record.status, record.paused_reason = "paused", e.reason
            transcript.append("run.paused", reason=e.reason, spent=control.spent.model_dump())
        except KeyboardInterrupt:
            record.status, record.paused_reason = "paused", "stopped by the user"
            transcript.append("run.paused", reason=record.paused_reason, spent=control.spent.model_dump())
            raise
        except BaseException as e:
            record.status, record.failure = "failed", describe_failure(e)
            transcript.append("run.failed", error=record.failure, error_type=type(e).__name__)
            raise
        finally:
            sandboxes.close()
            provider.prune({"macrohard.run": self.run_id})
            checkpoints.close()
            workspace.close()
            record.finished_at = time.time() if record.status in ("done", "partial", "failed") else None
            record.active_s = control.active_s
            record.transcript_head = transcript.head
            self._write(record)
        tickets: dict[str, Ticket] = state.get("tickets") or self._checkpoint_tickets()
        return summarize(self.paths, record, tickets, time.monotonic() - started, state.get("release"), self.settings)

    def check_resumable(self, decision: ApprovalDecision | None = None) -> None:
        """Raise ConfigError, saying why, unless this opened run can go on (answering `decision`, if given)."""
        record = self.record
        if record is None:
            return  # a new run: nothing to check
        if record.is_live():
            raise ConfigError(f"run {self.run_id} is still running", "wait for it, or stop it with Ctrl-C first")
        ended = record.status in ("done", "partial") or (
            record.status == "failed" and any(e.kind == "run.finished" for e in read_events(self.paths.transcript))
        )
        how = f"{record.status} and has ended" + (f" ({record.failure})" if record.failure and record.status == "failed" else "")
        if decision is not None and record.status != "awaiting_approval":
            raise ConfigError(
                f"run {self.run_id} is not waiting for an approval: it is {how if ended else record.status}",
                "`macrohard runs` shows which runs wait for one",
            )
        if ended:
            raise ConfigError(f"run {self.run_id} is {how}; there is nothing to resume",
                              f"`macrohard audit {self.run_id}` shows what it did; start a new run with `macrohard run`")
        if decision is None and record.status == "awaiting_approval":
            gate = (record.awaiting or {}).get("gate", "?")
            raise ConfigError(
                f"run {self.run_id} is waiting for approval of its {gate}",
                f"answer with `macrohard approve {self.run_id}` or `macrohard reject {self.run_id} --comment ...`",
            )

    def _weaker_sandbox(self) -> list[str]:
        """How the sandbox settings now are weaker than those the run started or last resumed with."""
        recorded = [e for e in read_events(self.paths.transcript) if e.kind in ("run.started", "run.resumed")
                    and isinstance(e.data.get("sandbox"), dict)]
        if not recorded:
            return []
        before = SandboxSettings.model_validate(recorded[0].data["sandbox"])
        weaker = self.settings.sandbox.weakened(than=before)
        if weaker and not self.allow_weaker_sandbox:
            raise ConfigError(
                f"run {self.run_id}'s sandbox settings are weaker than those it started with: {'; '.join(weaker)}",
                "restore them in run.json, or pass --allow-weaker-sandbox if you mean it",
            )
        return weaker

    def _spent_so_far(self) -> Spent:
        report = build_report(read_events(self.paths.transcript), self.settings.prices)
        return Spent(tokens=report.totals.prompt_tokens + report.totals.completion_tokens,
                     cost_usd=report.totals.cost_usd, calls=report.totals.model_calls)

    def _checkpoint_tickets(self) -> dict[str, Ticket]:
        return self.store.values(self.run_id).get("tickets") or {}

    def _write(self, record: RunRecord) -> None:
        # Redacted like the transcript: a failure message or a URL's userinfo may hold a secret.
        data = json.loads(record.model_dump_json())
        if self._redactor is not None:
            data = self._redactor.value(data)
        data = _strip_userinfo(data)
        if self.settings.storage.url:  # its user is needed to resume; a password is refused in it (config.py)
            data["settings"]["storage"]["url"] = self.settings.storage.url
        self.paths.run_json.write_text(json.dumps(data, indent=2) + "\n")
        self.store.save_record(self.paths.run_dir, data)


def source_of_run(run_dir: Path) -> RepoSource:
    """An earlier run's product as the start of a new run (`--from`): its main, with its tags."""
    record = load_record(run_dir)
    if record.is_live():
        raise ConfigError(f"run {record.run_id} is still running", "wait for it to stop before going on from it")
    repo = RunPaths(run_dir=run_dir).repo
    if not (repo / ".git").is_dir():
        raise ConfigError(f"run {record.run_id} has no product repository", "give a run that got past its start")
    return RepoSource(location=str(repo), base="main", kind="run")


@contextmanager
def _locked(paths: RunPaths) -> Iterator[None]:
    with (paths.run_dir / ".lock").open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"run {paths.run_dir.name} is being driven by another macrohard process", "wait for it to stop"
            ) from None
        yield


def _strip_userinfo(value: Any) -> Any:
    if isinstance(value, str):
        return without_userinfo(value)
    if isinstance(value, dict):
        return {k: _strip_userinfo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_userinfo(v) for v in value]
    return value


__all__ = [
    "CHECKPOINT_TYPES", "CompanyRun", "source_of_run", "RunPaths", "RunRecord", "RunSummary", "TicketLine", "checkpoint_values",
    "load_record", "load_spec", "new_run_id", "summarize",
]
