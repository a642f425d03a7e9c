"""A run's folder and its records: the layout on disk, run.json, and the summary a run ends with."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from macrohard.config import Settings
from macrohard.errors import ConfigError
from macrohard.llm.replay import ReplaySource
from macrohard.models import Spec, Ticket, Usage
from macrohard.sandbox.lifecycle import owner_alive
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import ChainHead, read_events


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
    # What the product started from, when not from nothing: the repository (or earlier
    # run), its base branch and commit, and what the checks warned about.
    source: dict[str, Any] | None = None
    replay: ReplaySource | None = None  # a `macrohard replay` run: the recording its answers come from

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
    branch: str | None = None  # the result handed back: macrohard/<run-id>
    changes: Path | None = None  # its change summary, fit for a pull request


def load_spec(path: Path) -> Spec:
    if not path.is_file():
        raise ConfigError(f"spec file {path} does not exist", "give the path of a Markdown file describing what to build")
    data = path.read_bytes()
    # A NUL byte is never in text: an image or an archive would otherwise go to the model as tokens of garbage.
    if (nul := data.find(b"\x00")) >= 0:
        raise ConfigError(f"spec file {path} is not text: it holds a NUL byte (at byte {nul})",
                          "give a Markdown (or plain text) file describing what to build")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"spec file {path} is not UTF-8 text (byte {e.start} cannot be decoded)",
                          "save it as UTF-8, or give a Markdown (or plain text) file describing what to build") from None
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
        branch=next((str(e.data["branch"]) for e in reversed(events) if e.kind == "handback"), None),
        changes=next((paths.run_dir / str(e.data["changes"]) for e in reversed(events) if e.kind == "handback"), None),
    )
