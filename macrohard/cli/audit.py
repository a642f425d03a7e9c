"""Commands that read a run after the fact: audit, blame, trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from macrohard.cli.common import ConfigOpt, RunArg, WorkspacesOpt, console, errors, resolve_run_dir, settings_for, user_errors
from macrohard.cli.show import clean, plain
from macrohard.transcript.audit import AuditReport, EventFilter, Totals, build_report
from macrohard.transcript.log import chain_head, read_events, verify_chain


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


@user_errors
def audit(
    run: RunArg,
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
    settings = settings_for(config, workspaces=workspaces)
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


@user_errors
def blame(
    run: RunArg,
    target: Annotated[str, typer.Argument(metavar="PATH[:LINE]", help="A file of the product, optionally with a line.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """From a line of the product to its commit, ticket, and the model answer that wrote it."""
    from macrohard.transcript.blame import blame as blame_line, render_blame

    path, _, line = target.rpartition(":") if target.rpartition(":")[2].isdigit() else (target, "", "")
    run_dir = resolve_run_dir(run, settings_for(config, workspaces=workspaces).workspaces)
    result = blame_line(run_dir, path, int(line) if line else None)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(clean(render_blame(result)), highlight=False, markup=False, soft_wrap=True)


@user_errors
def trace(
    run: RunArg,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="OTLP/HTTP traces URL, e.g. http://localhost:4318/v1/traces.")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Export a run to OpenTelemetry: a span per model call, tool call and sandbox command."""
    from macrohard.transcript.otel import export_run, sdk_tracer_provider, span_exporter

    run_dir = resolve_run_dir(run, settings_for(config, workspaces=workspaces).workspaces)
    provider = sdk_tracer_provider(span_exporter(endpoint))
    count = export_run(read_events(run_dir / "transcript.jsonl"), provider)
    provider.shutdown()
    errors.print(f"exported {count} spans" + (f" to {endpoint}" if endpoint else ""), highlight=False)
