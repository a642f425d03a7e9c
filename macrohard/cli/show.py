"""What the CLI shows of a run: text from a model or a repository, always as text.

Titles, reasons, summaries and file contents come from models and repositories. Put
into a Rich renderable as markup they could restyle or hide text, plant a link or
crash the CLI (`[/]`); printed raw, terminal escapes could clear the screen and draw
a fake "approved". So every such string goes through `plain()`: control characters
(C0 but newline and tab, DEL, C1, and so ESC) become visible `\\xNN` escapes, and the
result is a `Text`, which Rich never parses as markup.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

# A budget's pause reason (macrohard.control) names the budget; resuming needs its flag raised.
BUDGET_FLAGS = {"token budget": "--max-tokens", "cost budget": "--max-cost", "time budget": "--max-wall"}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """The string with every control or bidirectional-override character shown as an escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        str(value))


def plain(value: object, style: str = "") -> Text:
    """Untrusted text as a Rich Text: never markup, no control characters."""
    return Text(clean(value), style=style)


def label(prefix: str, style: str, value: object) -> Text:
    """A styled prefix (ours) followed by untrusted text."""
    return Text.assemble((prefix, style), " ", plain(value))


def approval_panel(payload: dict[str, Any], title: str) -> Panel:
    return Panel(plain(payload.get("summary", "")), title=plain(title), title_align="left")


def print_summary(console: Console, summary: Any) -> None:
    """The end-of-run summary: tickets, failure, totals and what to do next."""
    table = Table(title=plain(f"Run {summary.run_id}: {summary.status}"), title_justify="left", header_style="bold")
    for col in ("ticket", "title", "status", "attempts", "reason"):
        table.add_column(col)
    for t in summary.tickets:
        # "in progress", as the live table says it (a status is a word, not an identifier)
        table.add_row(plain(t.id), plain(t.title), plain(str(t.status).replace("_", " ")), str(t.attempts),
                      plain(t.reason or ""))
    console.print(table)
    if summary.failure:
        console.print(label("failure:", "red", summary.failure), soft_wrap=True)
    cost = f" · ${summary.cost_usd:.4f}" if summary.cost_usd else ""
    # Lines that fit 80 columns: a terminal wraps a longer one back to column 0.
    console.print(
        f"commits {summary.commits} · model calls {summary.model_calls} · tokens {summary.usage.prompt_tokens} in, "
        f"{summary.usage.completion_tokens} out{cost}",
        highlight=False, markup=False,
    )
    console.print(f"wall time {summary.wall_s:.1f}s", highlight=False, markup=False, soft_wrap=True)
    if summary.put_back:
        shown = ", ".join(summary.put_back[:6]) + (f" and {len(summary.put_back) - 6} more" if len(summary.put_back) > 6 else "")
        console.print(label("put back:", "yellow", f"{shown} (outside their territory or holding a secret; "
                                                   f"macrohard audit {summary.run_id} --kind territory)"))
    release = summary.release or {}
    if release:
        accepted = (f" · hidden acceptance tests {release['acceptance_passed']}/{release['acceptance_total']} passed"
                    if release.get("acceptance_total") is not None else "")
        console.print(plain(f"release:    {release['tag']} on {str(release['sha'])[:12]} · final suite "
                            f"{release.get('suite_tests', 0)} tests passed{accepted}"), soft_wrap=True)
        if release.get("image"):
            console.print(plain(f"image:      {release['image']} ({str(release.get('image_id') or '')[:19]})"),
                          soft_wrap=True)
        packages = [p for p in release.get("packages") or [] if isinstance(p, dict)]
        if packages:
            console.print(plain("packages:   " + ", ".join(f"{p.get('name')} {p.get('version')}" for p in packages)
                                + f" ({release.get('stack')} stack; sha256 of each in macrohard audit "
                                f"{summary.run_id} --kind dependencies)"), soft_wrap=True)
        smoke = release.get("smoke") or {}
        if smoke:
            default = " (the stack's default)" if smoke.get("default") else ""
            probe = f", {smoke['health_url']} answered" if smoke.get("health_url") else ""
            console.print(plain(f"smoke:      {smoke.get('kind')} `{smoke.get('command')}`{default} · exit code "
                                f"{smoke.get('exit_code')}{probe}"), soft_wrap=True)
            console.print(plain(f"try it:     docker run --rm {release['image']}"), soft_wrap=True)
    console.print(f"repo:       {summary.repo}\ntranscript: {summary.transcript}", highlight=False, markup=False, soft_wrap=True)
    if summary.branch:
        console.print(f"result:     branch {summary.branch}, changes in {summary.changes}", highlight=False, markup=False, soft_wrap=True)
    if summary.status == "paused":
        console.print(label("paused:", "yellow", summary.paused_reason), soft_wrap=True)
        limit = next((flag for budget, flag in BUDGET_FLAGS.items() if budget in (summary.paused_reason or "")), None)
        console.print(f"resume it:  macrohard resume {summary.run_id}", highlight=False, markup=False, soft_wrap=True)
        if limit:
            console.print(f"            (raise the limit with {limit} on resume)", highlight=False, markup=False, soft_wrap=True)
    elif summary.status == "awaiting_approval":
        gate = (summary.awaiting or {}).get("gate")
        console.print(approval_panel(summary.awaiting or {}, f"waiting for approval of the {gate}"))
        console.print(f"answer it:  macrohard approve {summary.run_id}", highlight=False, markup=False, soft_wrap=True)
        console.print(f"        or  macrohard reject {summary.run_id} --comment TEXT", highlight=False, markup=False, soft_wrap=True)
    console.print(f"audit it:   macrohard audit {summary.run_id}", highlight=False, markup=False, soft_wrap=True)
