"""The `macrohard` command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from macrohard._resources import resource_dir
from macrohard.cli.progress import ProgressView
from macrohard.config import Settings, load_settings
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
            errors.print(f"[bold red]error:[/] {e.message}" + (f" [dim]({e.hint})[/]" if e.hint else ""), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(config: Path | None, **flags: Any) -> Settings:
    return load_settings(config, overrides=flags)


def _sandbox_provider(settings: Settings) -> Any:
    from macrohard.sandbox.docker import DockerSandboxProvider, docker_client
    from macrohard.sandbox.image import build_image, image_exists

    client = docker_client()
    if not image_exists(client, settings.sandbox.image):
        if settings.sandbox.image != Settings().sandbox.image:
            raise SandboxError(f"sandbox image {settings.sandbox.image} does not exist", "build or load it, or unset sandbox.image")
        console.print(f"The sandbox image {settings.sandbox.image} is missing; building it (about a minute, once).")
        build_image(client, settings.sandbox.image, on_progress=lambda line: console.print(f"  {line}", highlight=False, markup=False))
    return DockerSandboxProvider(settings.sandbox, client)


def _run_company(spec: Path, settings: Settings, script: Path | None) -> None:
    from macrohard.company.run import CompanyRun

    model_factory = None
    if script is None:
        from macrohard.llm.openai import OpenAIChatModel

        model_factory = OpenAIChatModel
    run = CompanyRun(spec, settings, script=script, model_factory=model_factory)
    provider = _sandbox_provider(settings)
    console.print(f"Run [bold]{run.run_id}[/]: {run.spec.title} (model: {run.model_name})", highlight=False)
    with ProgressView(console) as view:
        summary = run.execute(provider, on_event=view.on_event)
    _print_summary(summary)
    if summary.status == "failed":
        raise typer.Exit(1)


def _print_summary(summary: Any) -> None:
    table = Table(title=f"Run {summary.run_id}: {summary.status}", title_justify="left", header_style="bold")
    for col in ("ticket", "title", "status", "attempts", "reason"):
        table.add_column(col)
    for t in summary.tickets:
        table.add_row(t.id, t.title, t.status, str(t.attempts), t.reason or "")
    console.print(table)
    if summary.failure:
        console.print(f"[red]failure:[/] {summary.failure}", highlight=False)
    console.print(
        f"commits {summary.commits} · model calls {summary.model_calls} · tokens {summary.usage.prompt_tokens} in, "
        f"{summary.usage.completion_tokens} out · wall time {summary.wall_s:.1f}s"
        + (f" · release {summary.release_tag}" if summary.release_tag else ""),
        highlight=False,
    )
    console.print(f"repo:       {summary.repo}\ntranscript: {summary.transcript}", highlight=False)
    console.print(f"audit it:   macrohard audit {summary.run_id}", highlight=False)


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Markdown file describing what to build.")],
    config: ConfigOpt = None,
    roles: Annotated[Path | None, typer.Option("--roles", help="Folder of role files (default: ./roles).")] = None,
    script: Annotated[
        Path | None, typer.Option("--script", help="Replay this model script instead of calling a model endpoint.")
    ] = None,
    max_parallel: ParallelOpt = None,
    max_attempts: AttemptsOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the company on SPEC with the configured model endpoint."""
    settings = _settings(config, roles_dir=roles, max_parallel=max_parallel, max_attempts=max_attempts, workspaces=workspaces)
    if script is not None and not script.is_file():
        raise ConfigError(f"script file {script} does not exist", "give the path of a model script (YAML)")
    _run_company(spec, settings, script)


@app.command()
@user_errors
def demo(
    config: ConfigOpt = None,
    max_parallel: ParallelOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run the bundled example with its scripted model: no network or API key needed."""
    settings = _settings(config, max_parallel=max_parallel, workspaces=workspaces)
    # The demo's script is written for the bundled roles, whatever ./roles holds.
    settings = settings.model_copy(update={"roles_dir": resource_dir("roles")})
    folder = resource_dir("demo")
    _run_company(folder / "spec.md", settings, folder / "script.yaml")


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
            name, str(t.model_calls), f"{t.prompt_tokens}/{t.completion_tokens}", cost, f"{t.model_latency_s:.2f}",
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
        console.print(f"{e.ts - start:8.2f}s {e.id} {e.kind:<15} {who:<20} {e.summary}", highlight=False, markup=False)
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
        console.print(render_blame(result), highlight=False, markup=False, soft_wrap=True)


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
