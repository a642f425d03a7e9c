"""Start, resume and answer a company run: check inputs, lay out the run folder, drive the graph.

A run stops in one of these states, recorded in run.json: done, partial (some tickets
failed or were blocked), failed, paused (a budget was reached or the user asked),
awaiting_approval (a gate waits for a person), or running. A run whose graph did not
reach its end (paused, awaiting_approval, crashed while running, failed on an error)
resumes from its last checkpoint; done and partial runs, and runs that failed in
planning, have ended.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from pydantic import BaseModel

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.failures import describe_failure, why_no_ticket_landed
from macrohard.company.graph import Company, compile_graph
from macrohard.company.sandboxes import RunSandboxes
from macrohard.config import ModelSettings, SandboxSettings, Settings
from macrohard.control import RunControl, RunPaused, Spent
from macrohard.errors import ConfigError
from macrohard.llm.base import ChatModel
from macrohard.llm.scripted import ScriptedModel
from macrohard.models import ApprovalDecision, Budget, Spec, Ticket, Usage, current_user
from macrohard.redact import Redactor, strip_url, without_userinfo
from macrohard.roles import Role, default_roles_dir, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.sandbox.lifecycle import owner_alive, owner_id
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import ChainHead, Listener, TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace

# Types the checkpointer may rebuild from msgpack; anything else is refused.
CHECKPOINT_TYPES = [
    ("macrohard.models", "Ticket"), ("macrohard.models", "TicketStatus"), ("macrohard.models", "Release"),
    ("macrohard.models", "Dispute"), ("macrohard.models", "RunSpec"), ("macrohard.models", "SmokeCheck"),
]

# Called at a gate with its payload ({"gate", "summary"}); returns the person's decision,
# or None to leave the run waiting at the gate (the person went away without answering).
Decide = Callable[[dict[str, Any]], ApprovalDecision | None]


class RunPaths(BaseModel):
    run_dir: Path

    @property
    def repo(self) -> Path:
        return self.run_dir / "repo"

    @property
    def transcript(self) -> Path:
        return self.run_dir / "transcript.jsonl"

    @property
    def state_db(self) -> Path:
        return self.run_dir / "state.sqlite"

    @property
    def run_json(self) -> Path:
        return self.run_dir / "run.json"

    @property
    def spec(self) -> Path:
        return self.run_dir / "spec.md"


class RunRecord(BaseModel):
    """run.json: what a run is, and how far it got."""

    run_id: str
    spec_title: str
    spec_sha256: str
    model: str
    script: str | None = None
    status: str = "running"
    failure: str | None = None
    paused_reason: str | None = None
    awaiting: dict[str, Any] | None = None  # the gate waiting for a person
    owner: str | None = None  # the process driving the run (host:pid:start)
    created_at: float
    finished_at: float | None = None
    active_s: float = 0.0  # time spent running, over all sessions: the wall-time budget
    # The transcript's last event when the run stopped: `audit --verify` checks the
    # chain still ends there, which a chain alone cannot show for a cut-off tail.
    transcript_head: ChainHead | None = None
    release: dict[str, Any] | None = None  # the release record: tag, sha, image, image_id, smoke (models.Release)
    settings: dict[str, object]

    def is_live(self) -> bool:
        return self.status == "running" and owner_alive(self.owner) is not False


class TicketLine(BaseModel):
    id: str
    title: str
    status: str
    attempts: int
    reason: str | None = None


class RunSummary(BaseModel):
    run_id: str
    status: str
    failure: str | None
    paused_reason: str | None = None
    awaiting: dict[str, Any] | None = None
    tickets: list[TicketLine]
    commits: int
    usage: Usage
    cost_usd: float
    model_calls: int
    wall_s: float
    release_tag: str | None
    release: dict[str, Any] | None = None  # the release record: sha, final suite, acceptance
    put_back: list[str] = []  # "role: path" changes a role made outside its territory (or holding a secret)
    repo: Path
    transcript: Path


def load_spec(path: Path) -> Spec:
    if not path.is_file():
        raise ConfigError(f"spec file {path} does not exist", "give the path of a Markdown file describing what to build")
    data = path.read_bytes()
    try:
        # A NUL byte is never in text: an image or an archive would otherwise go to the model as tokens of garbage.
        text = "" if b"\x00" in data else data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if data.strip() and not text:
        raise ConfigError(f"spec file {path} is not UTF-8 text", "give a Markdown (or plain text) file describing what to build")
    if not text.strip():
        raise ConfigError(f"spec file {path} is empty", "write what you want built in it, then run again")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), path.stem)
    return Spec(title=title or path.stem, text=text)


def load_record(run_dir: Path) -> RunRecord:
    path = RunPaths(run_dir=run_dir).run_json
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no run.json", "give a run folder made by `macrohard run`")
    return RunRecord.model_validate_json(path.read_text())


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


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
    ) -> None:
        self.allow_weaker_sandbox = allow_weaker_sandbox
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
        self.script = script.resolve() if script else None
        self.record = record
        if script is not None:
            scripted = ScriptedModel.from_file(script, latency_s=self.settings.scripted_latency_s)
            self.model_for: Callable[[str], ChatModel] = lambda role: scripted
            self.model_name = f"scripted ({script})"
        elif model_factory is not None:
            self.model_for = role_models(self.settings, self.roles, model_factory)
            self.model_name = describe_models(self.settings, self.roles)
        else:
            raise ConfigError("no model configured", "pass a script, or set [model] in macrohard.toml")
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
    ) -> CompanyRun:
        paths = RunPaths(run_dir=(settings.workspaces / (run_id or new_run_id())).resolve())
        return cls(paths, load_spec(spec_path), settings, script=script, model_factory=model_factory)

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
                   allow_weaker_sandbox=allow_weaker_sandbox)

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
        if self.record is None:
            self.paths.run_dir.mkdir(parents=True, exist_ok=False)
            self.paths.spec.write_text(self.spec.text)
            self.record = RunRecord(
                run_id=self.run_id, spec_title=self.spec.title, spec_sha256=self.spec.sha256, model=self.model_name,
                script=str(self.script) if self.script else None, created_at=time.time(),
                settings=json.loads(self.settings.model_dump_json()),
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
                removed_orphan_sandboxes=orphans, sandbox=self.settings.sandbox.model_dump(),
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
            control=control, resumed=resuming,
        )
        conn = _checkpoint_connection(self.paths.state_db)
        state: dict[str, Any] = {}
        try:
            saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
            graph = compile_graph(company, saver)
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
            conn.close()
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
        return checkpoint_values(self.paths).get("tickets") or {}

    def _write(self, record: RunRecord) -> None:
        # Redacted like the transcript: a failure message or a URL's userinfo may hold a secret.
        data = json.loads(record.model_dump_json())
        if self._redactor is not None:
            data = self._redactor.value(data)
        data = _strip_userinfo(data)
        self.paths.run_json.write_text(json.dumps(data, indent=2) + "\n")


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


def _checkpoint_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    # synchronous=NORMAL: a checkpoint is not fsynced on every step, yet it survives a
    # killed process (what resume is for). In WAL mode (which SqliteSaver would pick
    # too, but only later) the database stays consistent through a power cut, which
    # can cost at most the last few checkpoints; the steps they covered find their
    # commits, merges and tag by trailer when they run again.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def checkpoint_values(paths: RunPaths) -> dict[str, Any]:
    """The graph state at a run's last checkpoint, read without building the graph."""
    if not paths.state_db.is_file():
        return {}
    conn = sqlite3.connect(paths.state_db, check_same_thread=False)
    try:
        saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
        found = saver.get_tuple({"configurable": {"thread_id": paths.run_dir.name, "checkpoint_ns": ""}})
        return dict(found.checkpoint.get("channel_values", {})) if found else {}
    finally:
        conn.close()


def summarize(
    paths: RunPaths, record: RunRecord, tickets: dict[str, Ticket], wall_s: float, release: object, settings: Settings
) -> RunSummary:
    events = list(read_events(paths.transcript))
    report = build_report(events, settings.prices)
    put_back = sorted({f"{e.role}: {f}" for e in events if e.kind in ("territory.put_back", "secret.refused")
                       for f in e.data.get("files") or []})
    return RunSummary(
        put_back=put_back,
        run_id=record.run_id,
        status=record.status,
        failure=record.failure,
        paused_reason=record.paused_reason,
        awaiting=record.awaiting,
        tickets=[
            TicketLine(id=t.id, title=t.title, status=t.status.value, attempts=t.attempts, reason=t.failure_reason)
            for t in tickets.values()
        ],
        commits=report.totals.commits,
        usage=Usage(prompt_tokens=report.totals.prompt_tokens, completion_tokens=report.totals.completion_tokens),
        cost_usd=report.totals.cost_usd,
        model_calls=report.totals.model_calls,
        wall_s=wall_s,
        release_tag=getattr(release, "tag", None),
        release=release.model_dump() if hasattr(release, "model_dump") else None,
        repo=paths.repo,
        transcript=paths.transcript,
    )
