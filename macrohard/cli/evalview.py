"""What `macrohard eval` shows: live progress of the cases, their results, two evals side by side.

`macrohard batch` shows the same, unscored: a run's `released` where an eval's acceptance is.

Fed from the executor's threads (CaseWatch): a live table in a terminal, one line per
case started and ended elsewhere (CI, pipes). Reasons and phases come from runs and
models, so they are shown through `plain()`, never as markup.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from macrohard.cli.show import plain
from macrohard.eval.compare import Comparison
from macrohard.eval.results import CaseResult, EvalReport, EvalTotals
from macrohard.transcript.log import Event

STATUS_STYLE = {"done": "bold green", "partial": "yellow", "failed": "bold red", "paused": "yellow",
                "invalid": "bold red", "error": "bold red", "running": "cyan"}


def _released(c: CaseResult) -> Text:
    return Text("yes", style="green") if c.released else Text("no", style="red" if c.status != "queued" else "")


def _acceptance(c: CaseResult) -> Text:
    shown = f"{c.acceptance_passed}/{c.acceptance_total}" + ("*" if c.acceptance_on == "main" else "")
    return Text(shown, style="green" if c.solved else "red" if c.acceptance_total else "")


class EvalProgress:
    """The cases as they go; `controls` holds each running case's RunControl, to pause them.

    Unscored (a batch): its runs, whether each released where an eval shows acceptance.
    """

    def __init__(self, console: Console, names: list[str], scored: bool = True) -> None:
        self.console = console
        self.scored = scored
        self.started = time.monotonic()
        self.rows: dict[str, dict[str, Any]] = {n: {"status": "queued", "now": "", "tickets": 0, "merged": 0,
                                                    "calls": 0, "tokens": 0, "score": "", "since": None, "node": ""}
                                                   for n in names}
        self.controls: dict[str, Any] = {}
        self.stopping: str | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> EvalProgress:
        if self.console.is_terminal:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def _say(self, line: str) -> None:
        if self._live is None:
            self.console.print(plain(f"[{time.monotonic() - self.started:6.1f}s] {line}"), highlight=False)

    def stop(self, reason: str) -> None:
        """Start no more cases, and pause the running ones after their current step."""
        with self._lock:
            self.stopping = reason
            controls = list(self.controls.values())
        for control in controls:
            control.request_pause(reason)

    # -- CaseWatch ----------------------------------------------------------

    def starting(self, job: Any) -> bool:
        with self._lock:
            if self.stopping:
                return False
            self.rows.setdefault(job.case.name, {}).update(status="running", since=time.monotonic())
        self._say(f"{job.case.name}: started (run {job.run_id})")
        return True

    def control(self, name: str, control: Any) -> None:
        with self._lock:
            self.controls[name] = control
            stopping = self.stopping
        if stopping:
            control.request_pause(stopping)

    def placed(self, name: str, node: str) -> None:
        with self._lock:
            self.rows.setdefault(name, {})["node"] = node
        self._say(f"{name}: on node {node}")

    def event(self, name: str, event: Event) -> None:
        d = event.data
        with self._lock:
            row = self.rows.setdefault(name, {})
            if event.kind == "model.response":
                usage = d.get("usage") or {}
                row["calls"] += 1
                row["tokens"] += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
                row["now"] = f"{event.ticket + ' ' if event.ticket else ''}{event.role}"
            elif event.kind == "plan":
                row["tickets"] = len(d.get("tickets") or [])
            elif event.kind == "git.merge" and event.ticket:
                row["merged"] += 1
            elif event.kind == "node" and event.ticket is None:
                row["now"] = str(d.get("node"))
            elif event.kind == "executor.retry":
                row["now"] = f"retry {d.get('attempt')}: its worker on {d.get('previous_node') or '?'} died"
            elif event.kind in ("final.suite", "acceptance"):
                row["now"] = f"{'final suite' if event.kind == 'final.suite' else 'acceptance'}: " \
                             f"{'pass' if d.get('passed') else 'FAIL'}"

    def finished(self, result: CaseResult) -> None:
        with self._lock:
            row = self.rows.setdefault(result.name, {})
            row.update(status=result.status, now=result.reason or "", since=None, wall=result.wall_s,
                       score=_acceptance(result) if self.scored else _released(result))
        if self.scored:
            outcome = f"acceptance {result.acceptance_passed}/{result.acceptance_total}" + (", solved" if result.solved else "")
        else:
            outcome = "released" if result.released else "not released"
        self._say(f"{result.name}: {result.status}, {outcome}" + (f": {result.reason}" if result.reason else ""))

    def render(self) -> RenderableType:
        with self._lock:
            table = Table(box=None, pad_edge=False, header_style="bold")
            # The node column only when cases run on a cluster: each case's node, as it lands.
            nodes = any(row.get("node") for row in self.rows.values())
            for col in ("case" if self.scored else "run", "status", *(["node"] if nodes else []), "now", "tickets", "calls",
                        "tokens", "acceptance" if self.scored else "released", "time"):
                table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=40 if col == "now" else None)
            for name, row in self.rows.items():
                since = row.get("since")
                wall = time.monotonic() - since if since else row.get("wall")
                table.add_row(plain(name), Text(row["status"], style=STATUS_STYLE.get(row["status"], "")),
                              *([plain(row.get("node") or "")] if nodes else []), plain(row["now"]),
                              f"{row['merged']}/{row['tickets']}", str(row["calls"]), str(row["tokens"]),
                              row["score"] or "", f"{wall:.1f}s" if wall is not None else "")
            done = sum(1 for r in self.rows.values() if r["status"] not in ("queued", "running"))
            head = (f"{'eval' if self.scored else 'batch'} · {done}/{len(self.rows)} {'cases' if self.scored else 'runs'}"
                    f" · {time.monotonic() - self.started:.1f}s")
            if self.stopping:
                head += f" · stopping: {self.stopping}"
        return Group(Text(head), table)


def totals_line(t: EvalTotals) -> str:
    return (f"solved {t.solved} of {t.cases} · acceptance {t.acceptance_passed}/{t.acceptance_total} "
            f"({t.pass_rate:.0%}) · tickets {t.tickets_merged}/{t.tickets_total} merged")


def batch_totals_line(t: EvalTotals) -> str:
    return f"released {t.released} of {t.cases} · tickets {t.tickets_merged}/{t.tickets_total} merged"


def print_report(console: Console, report: EvalReport) -> None:
    """The results: a row per case (the reasons below it), then the totals; 80 columns hold case names of 20."""
    if report.kind == "batch":
        print_batch(console, report)
        return
    costs = any(c.cost_usd for c in report.cases)
    table = Table(title=plain(f"Eval {report.eval_id}: {report.suite.name} ({report.model})"), title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["case", "status", "accept", "solved", "merged", "tokens", *(["cost"] if costs else []), "time", "tamper"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("case", "status", "solved") else "right",
                         overflow="fold" if col == "case" else "ellipsis", no_wrap=col != "case")
    for c in report.cases:
        cost = [f"${c.cost_usd:.2f}"] if costs else []
        table.add_row(plain(c.name), Text(c.status, style=STATUS_STYLE.get(c.status, "")), _acceptance(c),
                      "yes" if c.solved else "no", f"{c.tickets_merged}/{c.tickets_total}", str(c.tokens),
                      *cost, f"{c.wall_s:.1f}s", str(c.tamper_events))
    console.print(table)
    if any(c.acceptance_on == "main" for c in report.cases):
        console.print("* scored on main by the eval: the run released nothing (see its reason)", highlight=False, markup=False)
    _reasons_and_totals(console, report, totals_line(report.totals))


def print_batch(console: Console, report: EvalReport) -> None:
    """A batch's results: a row per run, released or not (nothing is scored), the reasons, then the totals."""
    costs = any(c.cost_usd for c in report.cases)
    table = Table(title=plain(f"Batch {report.eval_id}: {report.suite.name} ({report.model})"), title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ["run", "status", "released", "merged", "failed", "tokens", *(["cost"] if costs else []), "time", "tamper"]:
        table.add_column(col, justify="left" if col in ("run", "status", "released") else "right",
                         overflow="fold" if col == "run" else "ellipsis", no_wrap=col != "run")
    for c in report.cases:
        cost = [f"${c.cost_usd:.2f}"] if costs else []
        table.add_row(plain(c.name), Text(c.status, style=STATUS_STYLE.get(c.status, "")), _released(c),
                      f"{c.tickets_merged}/{c.tickets_total}", str(c.tickets_failed), str(c.tokens), *cost,
                      f"{c.wall_s:.1f}s", str(c.tamper_events))
    console.print(table)
    _reasons_and_totals(console, report, batch_totals_line(report.totals))


def _reasons_and_totals(console: Console, report: EvalReport, outcome: str) -> None:
    """Under the table: why each case or run ended as it did, what came of them all, and what it took."""
    for c in report.cases:
        if c.reason:
            console.print(Text.assemble((f"{c.name}: ", "bold"), plain(c.reason, style=STATUS_STYLE.get(c.status, ""))))
    t = report.totals
    console.print(outcome, highlight=False, markup=False)
    console.print(f"model calls {t.model_calls} · tokens {t.tokens} · cost {dollars(t)} · "
                  f"tamper events {t.tamper_events} · wall time {report.wall_s:.1f}s", highlight=False, markup=False)


def dollars(t: EvalTotals) -> str:
    """What the calls cost, as audit shows it: — when no call had a price in the config (unknown, not free)."""
    if t.model_calls and t.unpriced_calls == t.model_calls:
        return "—"
    return f"${t.cost_usd:.4f}" + (f" (+{t.unpriced_calls} calls unpriced)" if t.unpriced_calls else "")


def _signed(value: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    return ("+" if value > 0 else "") + format(value, fmt)


def print_comparison(console: Console, c: Comparison) -> None:
    """Case by case: A's and B's acceptance (green: solved), B's differences; then both totals and theirs."""
    a, b = c.a, c.b
    costs = any(r.cost_usd for r in a.cases + b.cases)
    table = Table(title=plain(f"A: {a.eval_id} ({a.model})\nB: {b.eval_id} ({b.model})"), title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["case", "A", "B", "Δ score", "Δ tokens", *(["Δ cost"] if costs else []), "Δ time", "Δ tamper"]
    for col in columns:
        table.add_column(col, justify="left" if col == "case" else "right", no_wrap=col != "case", overflow="fold")
    for row in c.cases:
        score = row.score_delta
        shown = "—" if score is None else ("+" if score > 0 else "") + f"{score * 100:.0f}pp"
        cost = [_signed(row.delta("cost_usd"), ".4f")] if costs else []
        table.add_row(plain(row.name), _acceptance(row.a) if row.a else Text("—"), _acceptance(row.b) if row.b else Text("—"),
                      Text(shown, style="green" if (score or 0) > 0 else "red" if (score or 0) < 0 else ""),
                      _signed(row.delta("tokens"), ".0f"), *cost, _signed(row.delta("wall_s"), ".1f"),
                      _signed(row.delta("tamper_events"), ".0f"))
    console.print(table)
    for row in c.cases:
        if row.a is not None and row.b is not None and row.a.status != row.b.status:
            console.print(plain(f"{row.name}: {row.a.status} in A, {row.b.status} in B"))
    ta, tb = c.totals
    console.print(plain(f"A: {totals_line(ta)}"))
    console.print(plain(f"B: {totals_line(tb)}"))
    console.print(
        f"Δ solved {_signed(tb.solved - ta.solved, 'd')} · Δ pass rate {_signed((tb.pass_rate - ta.pass_rate) * 100, '.1f')}pp"
        f" · Δ tokens {_signed(tb.tokens - ta.tokens, 'd')} · Δ cost {_signed(tb.cost_usd - ta.cost_usd, '.4f')}"
        f" · Δ wall {_signed(b.wall_s - a.wall_s, '.1f')}s", highlight=False, markup=False)
