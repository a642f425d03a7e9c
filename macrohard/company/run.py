"""Start a company run: check inputs, lay out the run folder, drive the graph to the end."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.graph import Company, compile_graph
from macrohard.company.sandboxes import RunSandboxes
from macrohard.config import ModelSettings, Settings
from macrohard.errors import ConfigError
from macrohard.llm.base import ChatModel
from macrohard.llm.scripted import ScriptedModel
from macrohard.models import Spec, Ticket, Usage
from macrohard.redact import Redactor
from macrohard.roles import Role, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import ChainHead, Listener, TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace

# Types the checkpointer may rebuild from msgpack; anything else is refused.
CHECKPOINT_TYPES = [("macrohard.models", "Ticket"), ("macrohard.models", "TicketStatus"), ("macrohard.models", "Release")]


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
    created_at: float
    finished_at: float | None = None
    # The transcript's last event when the run stopped: `audit --verify` checks the
    # chain still ends there, which a chain alone cannot show for a cut-off tail.
    transcript_head: ChainHead | None = None
    settings: dict[str, object]


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
    tickets: list[TicketLine]
    commits: int
    usage: Usage
    model_calls: int
    wall_s: float
    release_tag: str | None
    repo: Path
    transcript: Path


def load_spec(path: Path) -> Spec:
    if not path.is_file():
        raise ConfigError(f"spec file {path} does not exist", "give the path of a Markdown file describing what to build")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ConfigError(f"spec file {path} is empty", "write what you want built in it, then run again")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), path.stem)
    return Spec(title=title or path.stem, text=text)


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
    models: dict[str, ChatModel] = {}
    for name, role in roles.items():
        chosen = settings.model
        if role.model:
            chosen = chosen.model_copy(update={"model": role.model})
        models[name] = factory(chosen.merged(settings.roles.get(name)))
    return models.__getitem__


def describe_models(settings: Settings, roles: dict[str, Role]) -> str:
    names = sorted({(settings.roles.get(r, ModelSettings()).model or roles[r].model or settings.model.model or "?") for r in roles})
    return ", ".join(names) + (f" at {settings.model.base_url}" if settings.model.base_url else "")


class CompanyRun:
    """One run of the company, from spec to report."""

    def __init__(
        self,
        spec_path: Path,
        settings: Settings,
        *,
        script: Path | None = None,
        model_factory: Callable[[ModelSettings], ChatModel] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.spec = load_spec(spec_path)
        self.settings = settings
        self.roles = load_roles(settings.roles_dir, known_tools=set(TOOL_NAMES))
        if script is not None:
            scripted = ScriptedModel.from_file(script, latency_s=settings.scripted_latency_s)
            self.model_for: Callable[[str], ChatModel] = lambda role: scripted
            self.model_name = f"scripted ({script})"
        elif model_factory is not None:
            self.model_for = role_models(settings, self.roles, model_factory)
            self.model_name = describe_models(settings, self.roles)
        else:
            raise ConfigError("no model configured", "pass a script, or set [model] in macrohard.toml")
        self.run_id = run_id or new_run_id()
        self.paths = RunPaths(run_dir=(settings.workspaces / self.run_id).resolve())
        self.script = script

    def _write_record(self, record: RunRecord) -> None:
        self.paths.run_json.write_text(record.model_dump_json(indent=2) + "\n")

    def execute(self, provider: SandboxProvider, on_event: Listener | None = None) -> RunSummary:
        started = time.monotonic()
        self.paths.run_dir.mkdir(parents=True, exist_ok=False)
        self.paths.spec.write_text(self.spec.text)
        record = RunRecord(
            run_id=self.run_id, spec_title=self.spec.title, spec_sha256=self.spec.sha256, model=self.model_name,
            script=str(self.script.resolve()) if self.script else None, created_at=time.time(),
            settings=json.loads(self.settings.model_dump_json()),
        )
        self._write_record(record)
        key_variables = {self.settings.model_for(r).api_key_env for r in self.roles}
        transcript = TranscriptLog(
            self.paths.transcript, self.run_id, Redactor.from_environment(os.environ, key_variables)
        )
        if on_event:
            transcript.subscribe(on_event)
        transcript.append("run.started", spec_title=self.spec.title, spec_sha256=self.spec.sha256, model=self.model_name)
        sandboxes = RunSandboxes(provider, transcript, self.run_id)
        company = Company(
            run_id=self.run_id, spec=self.spec, settings=self.settings, roles=self.roles, model_for=self.model_for,
            transcript=transcript, workspace=GitWorkspace(self.paths.run_dir), sandboxes=sandboxes,
        )
        conn = sqlite3.connect(self.paths.state_db, check_same_thread=False)
        state: dict[str, object] = {}
        try:
            saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
            graph = compile_graph(company, saver)
            config = {"configurable": {"thread_id": self.run_id}, "recursion_limit": self.settings.recursion_limit}
            state = graph.invoke({}, config, durability="sync")
            record.status = str(state.get("status", "failed"))
            record.failure = state.get("failure")  # type: ignore[assignment]
        except BaseException as e:
            record.status = "failed"
            record.failure = str(e) or type(e).__name__
            transcript.append("run.failed", error=record.failure, error_type=type(e).__name__)
            raise
        finally:
            sandboxes.close()
            provider.prune({"macrohard.run": self.run_id})
            conn.close()
            record.finished_at = time.time()
            record.transcript_head = transcript.head
            self._write_record(record)
        tickets: dict[str, Ticket] = state.get("tickets", {})  # type: ignore[assignment]
        return summarize(self.paths, record, tickets, time.monotonic() - started, state.get("release"))


def summarize(paths: RunPaths, record: RunRecord, tickets: dict[str, Ticket], wall_s: float, release: object) -> RunSummary:
    report = build_report(read_events(paths.transcript))
    return RunSummary(
        run_id=record.run_id,
        status=record.status,
        failure=record.failure,
        tickets=[
            TicketLine(id=t.id, title=t.title, status=t.status.value, attempts=t.attempts, reason=t.failure_reason)
            for t in tickets.values()
        ],
        commits=report.totals.commits,
        usage=Usage(prompt_tokens=report.totals.prompt_tokens, completion_tokens=report.totals.completion_tokens),
        model_calls=report.totals.model_calls,
        wall_s=wall_s,
        release_tag=getattr(release, "tag", None),
        repo=paths.repo,
        transcript=paths.transcript,
    )
