"""Commands that start, continue, answer and list runs: run, demo, resume, approve, reject, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.padding import Padding
from rich.text import Text

from macrohard._resources import resource_dir
from macrohard.cli.common import (
    AttemptsOpt,
    UsageMistake,
    at_least,
    ConfigOpt,
    ParallelOpt,
    RunArg,
    WorkspacesOpt,
    console,
    errors,
    resolve_run_dir,
    settings_for,
    user_errors,
)
from macrohard.cli.drive import drive, model_factory
from macrohard.cli.show import clean, plain
from macrohard.config import Settings
from macrohard.errors import ConfigError
from macrohard.stacks import STACKS

ApproveOpt = Annotated[
    list[str] | None,
    typer.Option("--approve", metavar="GATE", help="Wait for a person at this gate: plan or deploy (repeat for both)."),
]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", metavar="N", callback=at_least(1), help="Pause at this many tokens.")
]
MaxCostOpt = Annotated[
    float | None, typer.Option("--max-cost", metavar="USD", callback=at_least(0), help="Pause at this many US dollars.")
]
MaxWallOpt = Annotated[
    float | None,
    typer.Option("--max-wall", metavar="SECONDS", callback=at_least(0), help="Pause after this many seconds of running."),
]
WeakerOpt = Annotated[
    bool, typer.Option("--allow-weaker-sandbox", help="Go on even if run.json's sandbox settings are weaker than the run started with.")
]


def _run_company(spec: Path, settings: Settings, script: Path | None, source: Any = None) -> None:
    from macrohard.company.run import CompanyRun

    run = CompanyRun.create(spec, settings, script=script, model_factory=model_factory(script), source=source)
    if run.source is not None:
        for warning in run.source.warnings:
            errors.print(plain(f"warning: {warning}", style="yellow"), highlight=False, soft_wrap=True)
    on = (f" on {run.source.source.location} at {run.source.base_name} ({run.source.base_sha[:12]})"
          if run.source is not None else "")
    drive(run, banner=Text.assemble(
        "Run ", (run.run_id, "bold"), ": ", plain(f"{run.spec.title}{on} (model: {run.model_name})")
    ))


def _budget(max_tokens: int | None, max_cost: float | None, max_wall: float | None) -> dict[str, Any] | None:
    given = {"max_tokens": max_tokens, "max_cost_usd": max_cost, "max_wall_s": max_wall}
    return {k: v for k, v in given.items() if v is not None} or None


def _gates(approve: list[str] | None) -> list[str] | None:
    if not approve:
        return None
    unknown = sorted(set(approve) - {"plan", "deploy"})
    if unknown:
        raise UsageMistake(f"unknown gate {', '.join(unknown)}", "use --approve plan and/or --approve deploy")
    return sorted(set(approve))


@user_errors
def run(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Markdown file describing what to build.", show_default=False)],
    config: ConfigOpt = None,
    roles: Annotated[Path | None, typer.Option("--roles", metavar="DIR", help="Folder of role files (default: ./roles).")] = None,
    script: Annotated[
        Path | None,
        typer.Option("--script", metavar="FILE", help="Replay this model script (YAML) instead of calling a model endpoint."),
    ] = None,
    approve: ApproveOpt = None,
    max_parallel: ParallelOpt = None,
    max_attempts: AttemptsOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_wall: MaxWallOpt = None,
    acceptance: Annotated[
        Path | None,
        typer.Option("--acceptance", metavar="DIR",
                     help="Folder of hidden acceptance tests: run on main before the release, never shown to a role."),
    ] = None,
    tag_anyway: Annotated[
        bool, typer.Option("--tag-despite-acceptance", help="Tag the release even if hidden acceptance tests fail (and report it).")
    ] = False,
    repo: Annotated[
        str | None,
        typer.Option("--repo", metavar="PATH", help="Change this git repository (a folder or URL): the run works on a clone, "
                     "on top of its history, and never writes to it."),
    ] = None,
    base: Annotated[
        str | None, typer.Option("--base", metavar="BRANCH", help="With --repo: the branch to build on (default: its current one).")
    ] = None,
    from_run: Annotated[
        str | None,
        typer.Option("--from", metavar="RUN", help="Go on with an earlier run's product (run id, `latest` or folder): its next version."),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option("--stack", metavar="NAME", help="Build the product with this stack (python, node); "
                     "default: the product manager's choice."),
    ] = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the company on SPEC with the configured model endpoint."""
    if stack is not None and stack not in STACKS:
        raise UsageMistake(f"--stack {stack!r} is not a stack: use one of {', '.join(sorted(STACKS))}")
    settings = settings_for(
        config, roles_dir=roles, max_parallel=max_parallel, max_attempts=max_attempts, workspaces=workspaces, stack=stack,
        approve=_gates(approve), budget=_budget(max_tokens, max_cost, max_wall), acceptance=acceptance,
        acceptance_tags_anyway=tag_anyway or None,
    )
    if script is not None and not script.is_file():
        raise ConfigError(f"script file {script} does not exist", "give the path of a model script (YAML)")
    _run_company(spec, settings, script, _source(repo, base, from_run, settings))


def _source(repo: str | None, base: str | None, from_run: str | None, settings: Settings) -> Any:
    """What the run starts from: nothing, the user's repository, or an earlier run's product."""
    from macrohard.company.run import source_of_run
    from macrohard.workspace.source import RepoSource

    if repo and from_run:
        raise UsageMistake("--repo and --from name two different starting points; give one")
    if base and not repo:
        raise UsageMistake("--base goes with --repo (the branch of that repository to build on)")
    if from_run:
        return source_of_run(resolve_run_dir(from_run, settings.workspaces))
    return RepoSource(location=repo, base=base) if repo else None


@user_errors
def demo(
    config: ConfigOpt = None,
    approve: ApproveOpt = None,
    max_parallel: ParallelOpt = None,
    max_tokens: MaxTokensOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the bundled example on its scripted model.

    No network or API key needed; everything but the model is real (git, Docker, pytest).
    """
    settings = settings_for(
        config, max_parallel=max_parallel, workspaces=workspaces, approve=_gates(approve),
        budget=_budget(max_tokens, None, None),
    )
    # The demo's script is written for the bundled roles, whatever ./roles holds.
    settings = settings.model_copy(update={"roles_dir": resource_dir("roles")})
    folder = resource_dir("demo")
    _run_company(folder / "spec.md", settings, folder / "script.yaml")


def _open(run: str, config: Path | None, workspaces: Path | None, allow_weaker: bool = False, **overrides: Any) -> Any:
    from macrohard.company.run import CompanyRun, load_record

    here = settings_for(config, workspaces=workspaces)
    run_dir = resolve_run_dir(run, here.workspaces, here.storage.url)
    script = load_record(run_dir).script
    return CompanyRun.open(run_dir, overrides, model_factory=model_factory(Path(script) if script else None),
                           allow_weaker_sandbox=allow_weaker)


@user_errors
def resume(
    run: RunArg,
    max_parallel: ParallelOpt = None,
    max_attempts: AttemptsOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_wall: MaxWallOpt = None,
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Continue a stopped run from its last checkpoint.

    A run that paused, crashed or was killed goes on where it stopped; raise a limit
    that paused it with --max-tokens, --max-cost or --max-wall.
    """
    opened = _open(
        run, config, workspaces, allow_weaker_sandbox, max_parallel=max_parallel, max_attempts=max_attempts,
        max_tokens=max_tokens, max_cost_usd=max_cost, max_wall_s=max_wall,
    )
    drive(opened, banner=Text.assemble("Resuming run ", (clean(opened.run_id), "bold"), f" ({opened.record.status})"))


def _answer(
    run: str, decision: str, comment: str, config: Path | None, workspaces: Path | None, allow_weaker: bool
) -> None:
    from macrohard.models import ApprovalDecision

    opened = _open(run, config, workspaces, allow_weaker)
    gate = (opened.record.awaiting or {}).get("gate", "?")
    drive(
        opened, banner=Text.assemble(plain(f"{decision.capitalize()} the {gate} of run "), (clean(opened.run_id), "bold")),
        decision=ApprovalDecision(decision=decision, comment=comment),  # type: ignore[arg-type]
    )


@user_errors
def approve_run(
    run: RunArg,
    comment: Annotated[str, typer.Option("--comment", metavar="TEXT", help="A note recorded with the decision.")] = "",
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Approve the gate a run is waiting at, and let it go on."""
    _answer(run, "approve", comment, config, workspaces, allow_weaker_sandbox)


@user_errors
def reject_run(
    run: RunArg,
    comment: Annotated[
        str, typer.Option("--comment", metavar="TEXT", help="What to change: goes back to the role as feedback.", show_default=False)
    ],
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Reject the plan or release a run waits at.

    The role that wrote it does it again, with your comment as feedback.
    """
    if not comment.strip():
        raise UsageMistake("a rejection needs a comment", "say what to change with --comment")
    _answer(run, "reject", comment, config, workspaces, allow_weaker_sandbox)


@user_errors
def runs(config: ConfigOpt = None, workspaces: WorkspacesOpt = None) -> None:
    """List runs with their status and what is left to do."""
    from macrohard.company.run import RunPaths, RunRecord, checkpoint_values

    folder = settings_for(config, workspaces=workspaces).workspaces
    records = []
    for path in sorted(folder.glob("*/run.json")) if folder.is_dir() else []:
        try:
            records.append(RunRecord.model_validate_json(path.read_text()))
        except ValueError:
            errors.print(plain(f"skipping {path}: not a readable run.json", style="yellow"), highlight=False)
    if not records:
        console.print(plain(f"no runs in {folder}"))
        return
    rows: list[tuple[str, str, str, str, str]] = []
    for r in records:
        status = r.status if r.status != "running" or r.is_live() else "stopped (crashed)"
        tickets = checkpoint_values(RunPaths(run_dir=folder / r.run_id)).get("tickets") or {}
        merged = sum(1 for t in tickets.values() if t.status.value == "merged")
        rows.append((clean(r.run_id), status, f"{merged}/{len(tickets)} merged", clean(r.spec_title),
                     _why(r, list(tickets.values()))))
    widths = [max(len(row[i]) for row in [("run", "status", "tickets", "spec", ""), *rows]) for i in range(3)]

    def line(cells: tuple[str, ...], style: str = "") -> Text:
        head = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        return Text(f"{head}  {cells[3]}", style=style, no_wrap=True, overflow="ellipsis")

    console.print(line(("run", "status", "tickets", "spec"), "bold"))
    for row in rows:
        console.print(line(row[:4]))
        if row[4]:
            # Why it failed or paused, or what it waits for: on its own line, wrapped under itself.
            console.print(Padding(plain(row[4], style="red" if row[1] == "failed" else "yellow"), (0, 0, 0, 2)))


def _why(record: Any, tickets: list[Any]) -> str:
    """One line on a run: why it failed or paused, what it waits for, which tickets are open or lost."""
    lost = [f"{t.id} {t.status.value}: {t.failure_reason}" for t in tickets if t.status.value in ("failed", "blocked")]
    open_ = [t.id for t in tickets if t.status.value in ("todo", "in_progress", "passed")]
    parts: list[str] = []
    if record.status == "failed":
        parts.append(record.failure or "failed without a recorded reason")
    elif record.awaiting:
        parts.append(f"approve or reject the {record.awaiting.get('gate')}")
    elif record.paused_reason:
        parts.append(f"paused: {record.paused_reason}")
    if record.status == "partial" and lost:
        parts.append("; ".join(lost))
    if open_ and record.status not in ("failed", "done", "partial"):
        parts.append(f"{len(open_)} tickets open: {', '.join(open_)}")
    return "; ".join(parts)
