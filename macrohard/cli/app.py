"""The `macrohard` command."""

from __future__ import annotations

import functools
import os
import warnings
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from macrohard._resources import resource_dir
from macrohard.cli.progress import ProgressView
from macrohard.cli.show import approval_panel, clean, label, plain, print_summary
from macrohard.config import SandboxSettings, Settings, load_settings
from macrohard.errors import ConfigError, MacrohardError, SandboxError
from macrohard.transcript.audit import AuditReport, EventFilter, Totals, build_report
from macrohard.transcript.log import chain_head, read_events, verify_chain

app = typer.Typer(
    help="A software company of AI role agents: spec in, audited git repository out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sandbox_app = typer.Typer(help="Build and clean up the Docker sandbox.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

console = Console()
errors = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings file (default: ./macrohard.toml).")]
WorkspacesOpt = Annotated[Path | None, typer.Option("--workspaces", help="Folder that holds the run folders.")]
ParallelOpt = Annotated[int | None, typer.Option("--max-parallel", min=1, help="Tickets worked on at once.")]
AttemptsOpt = Annotated[int | None, typer.Option("--max-attempts", min=1, help="Engineer attempts per ticket.")]


def user_errors(command: F) -> F:
    """Expected failures become one line and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MacrohardError as e:
            # Messages quote models, repositories and settings ("[model] model"): text, never markup.
            line = label("error:", "bold red", e.message)
            if e.hint:
                line.append_text(Text.assemble(" ", plain(f"({e.hint})", style="dim")))
            errors.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(config: Path | None, **flags: Any) -> Settings:
    return load_settings(config, overrides=flags)


def _sandbox_provider(settings: Settings) -> Any:
    from macrohard.sandbox.docker import DockerSandboxProvider, SandboxWeakenedWarning, docker_client
    from macrohard.sandbox.image import build_image, image_exists

    for weaker in settings.sandbox.weakened():
        errors.print(label("warning:", "bold yellow", f"sandbox weakened: {weaker}"), highlight=False, soft_wrap=True)
    warnings.filterwarnings("ignore", category=SandboxWeakenedWarning)  # said once, above

    client = docker_client()
    if not image_exists(client, settings.sandbox.image):
        if settings.sandbox.image != SandboxSettings().image:
            raise SandboxError(f"sandbox image {settings.sandbox.image} does not exist", "build or load it, or unset sandbox.image")
        console.print(f"The sandbox image {settings.sandbox.image} is missing; building it (about a minute, once).")
        build_image(client, settings.sandbox.image, on_progress=lambda line: console.print(f"  {line}", highlight=False, markup=False))
    return DockerSandboxProvider(settings.sandbox, client)


def _model_factory(script: Path | None) -> Any:
    if script is not None:
        return None
    from macrohard.llm.openai import OpenAIChatModel

    return OpenAIChatModel


class _CtrlC:
    """The first Ctrl-C finishes the current step and pauses; a second stops at once.

    SIGTERM (a `kill`, a shutdown) stops at once too, leaving the run paused and resumable.
    """

    def __init__(self) -> None:
        self.control: Any = None
        self.pressed = False

    def __enter__(self) -> _CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._previous_term = signal.signal(signal.SIGTERM, self._stop)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
        signal.signal(signal.SIGTERM, self._previous_term)

    def _stop(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pressed or self.control is None:
            raise KeyboardInterrupt
        self.pressed = True
        self.control.request_pause("paused by the user (Ctrl-C)")
        errors.print("[yellow]Pausing after the current step; press Ctrl-C again to stop at once.[/]")


def _ask(view: ProgressView, payload: dict[str, Any]) -> Any:
    from macrohard.models import ApprovalDecision

    with view.paused():
        console.print(approval_panel(payload, f"Approve the {payload['gate']}?"))
        answer = typer.prompt("approve or reject", type=click.Choice(["approve", "reject"]), default="approve")
        comment = typer.prompt("why (goes back as feedback)") if answer == "reject" else ""
    return ApprovalDecision(decision=answer, comment=comment)


def _drive(run: Any, *, banner: Text, decision: Any = None) -> None:
    provider = _sandbox_provider(run.settings)
    console.print(banner, highlight=False)
    interactive = console.is_terminal and sys.stdin.isatty()
    with ProgressView(console) as view, _CtrlC() as ctrl_c:
        try:
            summary = run.execute(
                provider, on_event=view.on_event, decision=decision,
                decide=(lambda payload: _ask(view, payload)) if interactive else None,
                control_hook=lambda control: setattr(ctrl_c, "control", control),
            )
        except KeyboardInterrupt:
            view.__exit__(None, None, None)
            errors.print(f"[yellow]stopped;[/] resume with: macrohard resume {run.run_id}", highlight=False)
            # Worker threads may be inside a step; the run is checkpointed, so do not wait for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
    print_summary(console, summary)
    if summary.status == "failed":
        raise typer.Exit(1)


def _run_company(spec: Path, settings: Settings, script: Path | None) -> None:
    from macrohard.company.run import CompanyRun

    run = CompanyRun.create(spec, settings, script=script, model_factory=_model_factory(script))
    _drive(run, banner=Text.assemble("Run ", (run.run_id, "bold"), ": ", plain(f"{run.spec.title} (model: {run.model_name})")))


ApproveOpt = Annotated[
    list[str] | None, typer.Option("--approve", help="Wait for a person at this gate: plan, deploy (repeatable).")
]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Stop (paused) at this many tokens.")]
MaxCostOpt = Annotated[float | None, typer.Option("--max-cost", min=0, help="Stop (paused) at this many US dollars.")]
MaxWallOpt = Annotated[float | None, typer.Option("--max-wall", min=0, help="Stop (paused) after this many seconds of running.")]


def _budget(max_tokens: int | None, max_cost: float | None, max_wall: float | None) -> dict[str, Any] | None:
    given = {"max_tokens": max_tokens, "max_cost_usd": max_cost, "max_wall_s": max_wall}
    return {k: v for k, v in given.items() if v is not None} or None


def _gates(approve: list[str] | None) -> list[str] | None:
    if not approve:
        return None
    unknown = sorted(set(approve) - {"plan", "deploy"})
    if unknown:
        raise ConfigError(f"unknown gate {', '.join(unknown)}", "use --approve plan and/or --approve deploy")
    return sorted(set(approve))


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Markdown file describing what to build.")],
    config: ConfigOpt = None,
    roles: Annotated[Path | None, typer.Option("--roles", help="Folder of role files (default: ./roles).")] = None,
    script: Annotated[
        Path | None, typer.Option("--script", help="Replay this model script instead of calling a model endpoint.")
    ] = None,
    approve: ApproveOpt = None,
    max_parallel: ParallelOpt = None,
    max_attempts: AttemptsOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_wall: MaxWallOpt = None,
    acceptance: Annotated[
        Path | None,
        typer.Option("--acceptance", help="Folder of hidden acceptance tests: run on main before the release, never shown to a role."),
    ] = None,
    tag_anyway: Annotated[
        bool, typer.Option("--tag-despite-acceptance", help="Tag the release even if hidden acceptance tests fail (and report it).")
    ] = False,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the company on SPEC with the configured model endpoint."""
    settings = _settings(
        config, roles_dir=roles, max_parallel=max_parallel, max_attempts=max_attempts, workspaces=workspaces,
        approve=_gates(approve), budget=_budget(max_tokens, max_cost, max_wall), acceptance=acceptance,
        acceptance_tags_anyway=tag_anyway or None,
    )
    if script is not None and not script.is_file():
        raise ConfigError(f"script file {script} does not exist", "give the path of a model script (YAML)")
    _run_company(spec, settings, script)


@app.command()
@user_errors
def demo(
    config: ConfigOpt = None,
    approve: ApproveOpt = None,
    max_parallel: ParallelOpt = None,
    max_tokens: MaxTokensOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the bundled example with its scripted model: no network or API key needed."""
    settings = _settings(
        config, max_parallel=max_parallel, workspaces=workspaces, approve=_gates(approve),
        budget=_budget(max_tokens, None, None),
    )
    # The demo's script is written for the bundled roles, whatever ./roles holds.
    settings = settings.model_copy(update={"roles_dir": resource_dir("roles")})
    folder = resource_dir("demo")
    _run_company(folder / "spec.md", settings, folder / "script.yaml")


WeakerOpt = Annotated[
    bool, typer.Option("--allow-weaker-sandbox", help="Resume even if run.json's sandbox settings are weaker than the run started with.")
]


def _open(run: str, config: Path | None, workspaces: Path | None, allow_weaker: bool = False, **overrides: Any) -> Any:
    from macrohard.company.run import CompanyRun, load_record

    run_dir = resolve_run_dir(run, _settings(config, workspaces=workspaces).workspaces)
    script = load_record(run_dir).script
    return CompanyRun.open(run_dir, overrides, model_factory=_model_factory(Path(script) if script else None),
                           allow_weaker_sandbox=allow_weaker)


@app.command()
@user_errors
def resume(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    max_parallel: ParallelOpt = None,
    max_attempts: AttemptsOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_wall: MaxWallOpt = None,
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Continue a stopped run (paused, crashed, killed) from its last checkpoint."""
    opened = _open(
        run, config, workspaces, allow_weaker_sandbox, max_parallel=max_parallel, max_attempts=max_attempts,
        max_tokens=max_tokens, max_cost_usd=max_cost, max_wall_s=max_wall,
    )
    _drive(opened, banner=Text.assemble("Resuming run ", (clean(opened.run_id), "bold"), f" ({opened.record.status})"))


def _answer(
    run: str, decision: str, comment: str, config: Path | None, workspaces: Path | None, allow_weaker: bool
) -> None:
    from macrohard.models import ApprovalDecision

    opened = _open(run, config, workspaces, allow_weaker)
    gate = (opened.record.awaiting or {}).get("gate", "?")
    _drive(
        opened, banner=Text.assemble(plain(f"{decision.capitalize()} the {gate} of run "), (clean(opened.run_id), "bold")),
        decision=ApprovalDecision(decision=decision, comment=comment),  # type: ignore[arg-type]
    )


@app.command("approve")
@user_errors
def approve_run(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    comment: Annotated[str, typer.Option("--comment", help="A note recorded with the decision.")] = "",
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Approve the gate a run is waiting at, and let it go on."""
    _answer(run, "approve", comment, config, workspaces, allow_weaker_sandbox)


@app.command("reject")
@user_errors
def reject_run(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    comment: Annotated[str, typer.Option("--comment", help="What to change: goes back to the role as feedback.")],
    allow_weaker_sandbox: WeakerOpt = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Reject the plan or release a run is waiting at; the role redoes it with your comment."""
    if not comment.strip():
        raise ConfigError("a rejection needs a comment", "say what to change with --comment")
    _answer(run, "reject", comment, config, workspaces, allow_weaker_sandbox)


@app.command()
@user_errors
def runs(config: ConfigOpt = None, workspaces: WorkspacesOpt = None) -> None:
    """List runs with their status and what is left to do."""
    from macrohard.company.run import RunPaths, RunRecord, checkpoint_values

    folder = _settings(config, workspaces=workspaces).workspaces
    records = []
    for path in sorted(folder.glob("*/run.json")) if folder.is_dir() else []:
        try:
            records.append(RunRecord.model_validate_json(path.read_text()))
        except ValueError:
            errors.print(plain(f"skipping {path}: not a readable run.json", style="yellow"), highlight=False)
    if not records:
        console.print(plain(f"no runs in {folder}"))
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("run", "status", "spec", "tickets", "left to do"):
        table.add_column(col, no_wrap=col != "left to do")
    for r in records:
        status = r.status if r.status != "running" or r.is_live() else "stopped (crashed)"
        tickets = checkpoint_values(RunPaths(run_dir=folder / r.run_id)).get("tickets") or {}
        merged = sum(1 for t in tickets.values() if t.status.value == "merged")
        open_ = [t.id for t in tickets.values() if t.status.value in ("todo", "in_progress", "passed")]
        left = f"approve the {r.awaiting.get('gate')}" if r.awaiting else (r.paused_reason or "")
        if open_:
            left = (left + "; " if left else "") + f"{len(open_)} tickets: {', '.join(open_)}"
        table.add_row(plain(r.run_id), status, plain(r.spec_title), f"{merged}/{len(tickets)} merged", plain(left or "-"))
    console.print(table)


def resolve_run_dir(run: str, workspaces: Path) -> Path:
    """A run id, `latest`, or the path of a run folder."""
    if run == "latest":
        runs = sorted(p for p in workspaces.glob("*/transcript.jsonl")) if workspaces.is_dir() else []
        if not runs:
            raise ConfigError(f"there are no runs in {workspaces}", "start one with `macrohard run SPEC` or `macrohard demo`")
        return runs[-1].parent
    for candidate in (Path(run), workspaces / run):
        if (candidate / "transcript.jsonl").is_file():
            return candidate
    raise ConfigError(f"no run {run!r} in {workspaces}", "give a run id from that folder, `latest`, or a run folder's path")


def _totals_table(title: str, groups: dict[str, Totals]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    # Few, short columns: the table must fit an 80-column terminal.
    for col in ("", "calls", "tokens", "$", "model s", "tools", "cmds", "sbx s", "commits"):
        table.add_column(col, justify="left" if not col else "right", no_wrap=True, min_width=15 if not col else len(col))
    for name, t in groups.items():
        cost = "—" if t.unpriced_calls == t.model_calls else f"{t.cost_usd:.4f}"
        table.add_row(
            plain(name), str(t.model_calls), f"{t.prompt_tokens}/{t.completion_tokens}", cost, f"{t.model_latency_s:.2f}",
            f"{t.tool_calls}/{t.tool_errors}", str(t.sandbox_commands), f"{t.sandbox_s:.2f}", str(t.commits),
        )
    return table


def _verify(run_dir: Path) -> None:
    from macrohard.company.run import RunRecord

    record_path = run_dir / "run.json"
    record = RunRecord.model_validate_json(record_path.read_text()) if record_path.is_file() else None
    anchor = record.transcript_head if record else None
    broken = verify_chain(run_dir / "transcript.jsonl", anchor, final=bool(record and record.finished_at))
    if broken is not None:
        errors.print(
            f"[bold red]TAMPERED:[/] transcript line {broken.line} ({broken.event_id or 'unreadable'}): {broken.reason}",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(1)
    head = chain_head(run_dir / "transcript.jsonl")
    anchored = " and ends at the head recorded in run.json" if anchor else " (no recorded head to check the end against)"
    console.print(
        f"[green]verified:[/] {head.seq if head else 0} events, chain intact{anchored}; head {head.hash if head else '-'}",
        highlight=False, soft_wrap=True,
    )


@app.command()
@user_errors
def audit(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain; exit 1 at the first tampered event.")] = False,
    role: Annotated[str | None, typer.Option("--role", help="Only this role's events.")] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Only this ticket's events.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind of event, or a prefix: model, sandbox, git.")] = None,
    since: Annotated[float | None, typer.Option("--since", help="Only events at least this many seconds into the run.")] = None,
    until: Annotated[float | None, typer.Option("--until", help="Only events at most this many seconds into the run.")] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Print a run's timeline and its totals (tokens, cost, latency, sandbox time) by role and ticket."""
    settings = _settings(config, workspaces=workspaces)
    run_dir = resolve_run_dir(run, settings.workspaces)
    if verify:
        _verify(run_dir)
        return
    selected = EventFilter(role=role, ticket=ticket, kind=kind, since_s=since, until_s=until)
    report: AuditReport = build_report(selected.select(read_events(run_dir / "transcript.jsonl")), settings.prices)
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    start = next(iter(read_events(run_dir / "transcript.jsonl"))).ts
    for e in report.timeline:
        who = " ".join(x for x in (e.role, e.ticket) if x)
        console.print(clean(f"{e.ts - start:8.2f}s {e.id} {e.kind:<15} {who:<20} {e.summary}"), highlight=False, markup=False)
    console.print(_totals_table("By role", report.by_role))
    console.print(_totals_table("By ticket", report.by_ticket))
    console.print(_totals_table("Selected" if selected.model_dump(exclude_none=True) else "Run", {"total": report.totals}))
    console.print(
        f"status: {report.status or 'unfinished'} · {report.events} events"
        " · tokens are in/out, tools are calls/errors, $ needs [prices] in macrohard.toml",
        highlight=False,
        markup=False,
    )


@app.command()
@user_errors
def blame(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    target: Annotated[str, typer.Argument(metavar="PATH[:LINE]", help="A file of the product, optionally with a line.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """From a line of the product to its commit, ticket, and the model answer that wrote it."""
    from macrohard.transcript.blame import blame as blame_line, render_blame

    path, _, line = target.rpartition(":") if target.rpartition(":")[2].isdigit() else (target, "", "")
    run_dir = resolve_run_dir(run, _settings(config, workspaces=workspaces).workspaces)
    result = blame_line(run_dir, path, int(line) if line else None)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(clean(render_blame(result)), highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def trace(
    run: Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")],
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="OTLP/HTTP traces URL, e.g. http://localhost:4318/v1/traces.")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Export a run to OpenTelemetry: a span per model call, tool call and sandbox command."""
    from macrohard.transcript.otel import export_run, sdk_tracer_provider, span_exporter

    run_dir = resolve_run_dir(run, _settings(config, workspaces=workspaces).workspaces)
    provider = sdk_tracer_provider(span_exporter(endpoint))
    count = export_run(read_events(run_dir / "transcript.jsonl"), provider)
    provider.shutdown()
    errors.print(f"exported {count} spans" + (f" to {endpoint}" if endpoint else ""), highlight=False)


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; it has no login, so keep it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Listen on a non-loopback address anyway; needs --allowed-host, and a token.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None, typer.Option("--allowed-host", help="With --allow-remote: a host name clients use (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Start the web audit viewer: runs, timelines, ticket boards, events, diffs, live updates."""
    import secrets as tokens

    from macrohard.viewer.server import exposure_warning, serve as serve_viewer

    settings = _settings(config, workspaces=workspaces)
    warning = exposure_warning(host)
    if warning and not allow_remote:
        raise ConfigError(warning, "serve on 127.0.0.1, or pass --allow-remote if you mean it")
    if warning and not allowed_host:
        raise ConfigError("--allow-remote needs the host names clients use", "pass --allowed-host NAME (repeatable)")
    if warning:
        errors.print(label("warning:", "bold yellow", warning), highlight=False, soft_wrap=True)
    if not settings.workspaces.is_dir():
        raise ConfigError(f"there are no runs in {settings.workspaces}", "start one with `macrohard demo`, or pass --workspaces")
    token = tokens.token_urlsafe(24) if warning else None
    where = f"http://{(allowed_host or [host])[0]}:{port}/" + (f"?token={token}" if token else "")
    console.print(plain(f"Viewer for {settings.workspaces.resolve()} at {where}  (Ctrl-C stops it)"))
    serve_viewer(settings.workspaces, host, port, prices=settings.prices, allow_remote=allow_remote,
                 allowed_hosts=allowed_host or (), token=token)


@sandbox_app.command("build")
@user_errors
def sandbox_build(
    tag: Annotated[str | None, typer.Option("--tag", help="Image tag (default: sandbox.image).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Build the sandbox image (offline from Debian's packages when no registry answers)."""
    from macrohard.sandbox.docker import docker_client
    from macrohard.sandbox.image import build_image

    settings = _settings(config)
    image = tag or settings.sandbox.image
    image_id = build_image(docker_client(), image, on_progress=lambda line: console.print(line, highlight=False, markup=False))
    console.print(f"built {image} ({image_id[:19]})")


@sandbox_app.command("prune")
@user_errors
def sandbox_prune(
    config: ConfigOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Also remove the sandboxes of runs in progress.")] = False,
) -> None:
    """Remove the sandbox containers that crashed runs left behind (with --all, every one)."""
    from macrohard.sandbox.docker import DockerSandboxProvider, docker_client

    provider = DockerSandboxProvider(_settings(config).sandbox, docker_client(), cleanup_on_exit=False)
    removed = provider.prune() if all_ else provider.prune_orphans()
    console.print(f"removed {removed} container{'s' if removed != 1 else ''}")


@sandbox_app.command("doctor")
@user_errors
def sandbox_doctor(config: ConfigOpt = None) -> None:
    """Check the engine, the image, and that every hardening option takes effect in a sandbox."""
    from macrohard.sandbox.doctor import run_doctor

    settings = _settings(config)
    report = run_doctor(settings.sandbox)
    table = Table(title="Sandbox doctor", title_justify="left", header_style="bold")
    for col in ("check", "expected", "found", ""):
        table.add_column(col)
    for c in report.checks:
        table.add_row(c.name, c.expected, c.found, "[green]ok[/]" if c.ok else "[bold red]FAIL[/]")
    console.print(table)
    for weakness in report.weakened:
        console.print(f"[yellow]weakened:[/] {weakness}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
