"""Commands that read a run after the fact: audit, blame, trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from macrohard.cli.common import (
    ConfigOpt,
    ExitCode,
    RunArg,
    WorkspacesOpt,
    console,
    errors,
    resolve_run_dir,
    settings_for,
    user_errors,
)
from macrohard.cli.show import clean, label, plain
from macrohard.errors import ConfigError
from macrohard.transcript.describe import KNOWN_KINDS
from macrohard.transcript.audit import AuditReport, EventFilter, Totals, build_report, role_of, ticket_of
from macrohard.transcript.log import Event, chain_head, read_events, verify_chain


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


def _chain_break(run_dir: Path) -> Any:
    """Where the transcript's hash chain breaks (checked against run.json's recorded head), or None."""
    from macrohard.company.run import RunRecord

    record_path = run_dir / "run.json"
    try:
        record = RunRecord.model_validate_json(record_path.read_text()) if record_path.is_file() else None
    except ValueError:
        record = None
    anchor = record.transcript_head if record else None
    return verify_chain(run_dir / "transcript.jsonl", anchor, final=bool(record and record.finished_at)), anchor


def _broken_line(broken: Any) -> str:
    return f"transcript line {broken.line} ({broken.event_id or 'unreadable'}): {broken.reason}"


def warn_if_tampered(run: str, run_dir: Path) -> None:
    """Say so, before anything read from it is shown, when the transcript fails verification."""
    broken, _ = _chain_break(run_dir)
    if broken is not None:
        errors.print(label("warning:", "bold red", f"this transcript fails verification at {_broken_line(broken)}; "
                                                   f"what follows may not be what the run recorded "
                                                   f"(macrohard audit {run} --verify)"), highlight=False)


def _verify(run_dir: Path) -> None:
    broken, anchor = _chain_break(run_dir)
    if broken is not None:
        errors.print(label("TAMPERED:", "bold red", _broken_line(broken)), highlight=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.FAILED))
    head = chain_head(run_dir / "transcript.jsonl")
    anchored = " and ends at the head recorded in run.json" if anchor else " (no recorded head to check the end against)"
    console.print(
        label("verified:", "green", f"{head.seq if head else 0} events, chain intact{anchored}; head {head.hash if head else '-'}"),
        highlight=False, soft_wrap=True,
    )


def _check_filter(selected: EventFilter, events: list[Event]) -> None:
    """A role, ticket or kind the run does not have is a mistake to name, not an empty audit."""
    facets = {
        "role": ("roles", {role_of(e) for e in events}, selected.role),
        "ticket": ("tickets", {ticket_of(e) for e in events}, selected.ticket),
    }
    for name, (plural, known, given) in facets.items():
        if given is not None and given not in known:
            raise ConfigError(f"the run has no {name} {given!r}", f"its {plural} are: {', '.join(sorted(known))}")
    kinds = {e.kind for e in events}
    known = any(k == selected.kind or k.startswith(f"{selected.kind}.") for k in KNOWN_KINDS)
    if selected.kind is not None and not known and not any(k == selected.kind or k.startswith(selected.kind + ".") for k in kinds):
        prefixes = {k.split(".")[0] for k in kinds if "." in k}
        raise ConfigError(f"the run has no event of kind {selected.kind!r}",
                          f"its kinds are: {', '.join(sorted(kinds | prefixes))}")


def _print_timeline(report: AuditReport) -> None:
    start = report.started or 0.0
    lines = [(f"{e.ts - start:.2f}s", e.id, e.kind, " ".join(x for x in (e.role, e.ticket) if x), e.summary)
             for e in report.timeline]
    if not console.is_terminal:
        # Piped: one event per line, never wrapped, for grep and friends.
        for offset, event_id, kind, who, summary in lines:
            console.print(clean(f"{offset:>9} {event_id} {kind:<15} {who + ':' if who else ''} {summary}"),
                          highlight=False, markup=False, soft_wrap=True, crop=False)
        return
    # A terminal: the description wraps under itself, never back to column 0.
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    for offset, event_id, kind, who, summary in lines:
        grid.add_row(offset, plain(event_id), plain(kind), Text.assemble((clean(who) + ": " if who else "", "bold"), plain(summary)))
    console.print(grid)


@user_errors
def audit(
    run: RunArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain; exit 1 at the first tampered event.")] = False,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="Only this role's events (orchestrator: also those no role wrote).")
    ] = None,
    ticket: Annotated[
        str | None, typer.Option("--ticket", metavar="TICKET", help="Only this ticket's events, e.g. T-2.")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="KIND", help="Only this kind of event, e.g. model.request, or a prefix: model, sandbox, git."),
    ] = None,
    since: Annotated[
        float | None, typer.Option("--since", metavar="SECONDS", help="Only events at least this many seconds into the run.")
    ] = None,
    until: Annotated[
        float | None, typer.Option("--until", metavar="SECONDS", help="Only events at most this many seconds into the run.")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Print a run's timeline and totals by role and ticket.

    Totals are model calls, tokens, cost, model latency, tool calls and errors, sandbox
    commands and time, and commits.
    """
    settings = settings_for(config, workspaces=workspaces)
    run_dir = resolve_run_dir(run, settings.workspaces)
    if verify:
        _verify(run_dir)
        return
    warn_if_tampered(run, run_dir)
    events = list(read_events(run_dir / "transcript.jsonl"))
    selected = EventFilter(role=role, ticket=ticket, kind=kind, since_s=since, until_s=until)
    _check_filter(selected, events)
    report = build_report(events, settings.prices, selected)
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    _print_timeline(report)
    # Rows that count nothing (every one, for `--kind plan`) are left out, and a table with none.
    tables = False
    for title, groups in (("By role", report.by_role), ("By ticket", report.by_ticket),
                          ("Selected" if selected.active else "Run", {"total": report.totals})):
        counted = {name: t for name, t in groups.items() if t != Totals()}
        if counted:
            console.print(_totals_table(title, counted))
            tables = True
    shown = f"{report.events} of {report.run_events} events selected" if selected.active else f"{report.events} events"
    console.print(plain(f"status: {report.status or 'unfinished'} · {shown}"), highlight=False)
    if tables:
        console.print(plain("tokens: in/out · tools: calls/errors · sbx s: sandbox time, with start and stop"),
                      style="dim", highlight=False)
        console.print(plain("$: needs [prices] in macrohard.toml"), style="dim", highlight=False)


@user_errors
def blame(
    run: RunArg,
    target: Annotated[
        str, typer.Argument(metavar="PATH[:LINE]", help="A file of the product, optionally with a line.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Trace a line of the product to the model answer that wrote it.

    From git blame to the commit, its ticket, the transcript event its trailer names, and
    the tool call (and prompt) that wrote the line.
    """
    from macrohard.transcript.blame import blame as blame_line, render_blame

    path, _, line = target.rpartition(":") if target.rpartition(":")[2].isdigit() else (target, "", "")
    run_dir = resolve_run_dir(run, settings_for(config, workspaces=workspaces).workspaces)
    warn_if_tampered(run, run_dir)
    result = blame_line(run_dir, path, int(line) if line else None)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(clean(render_blame(result)), highlight=False, markup=False, soft_wrap=True)


@user_errors
def trace(
    run: RunArg,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", metavar="URL", help="OTLP/HTTP traces URL, e.g. http://localhost:4318/v1/traces (default: print the spans)."),
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Export a run to OpenTelemetry (a collector, or the console).

    A span per role and task, model call, tool call and sandbox command, named by the
    GenAI semantic conventions.
    """
    from macrohard.transcript.otel import send_run, span_exporter

    run_dir = resolve_run_dir(run, settings_for(config, workspaces=workspaces).workspaces)
    warn_if_tampered(run, run_dir)
    count = send_run(read_events(run_dir / "transcript.jsonl"), span_exporter(endpoint),
                     f"the collector at {endpoint}" if endpoint else "the console")
    errors.print(plain(f"exported {count} spans" + (f" to {endpoint}" if endpoint else "")), highlight=False)
