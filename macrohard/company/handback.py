"""Handing the result back: the branch `macrohard/<run-id>` and a change summary fit for a pull request.

A mixin of Company (company/graph.py), used by the report node. The branch is main as the
run left it, on top of the history the run started from (a user's repository, an earlier
run's product, or nothing); `macrohard export` fetches it into the user's repository. The
summary (CHANGES.md in the run folder) says what changed and why, ticket by ticket, the
tests added, the risks a reviewer should look at, and the tickets that did not land.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from macrohard.company.parts import CompanyParts
from macrohard.models import Ticket, TicketStatus
from macrohard.transcript.log import Event

RESULT_PREFIX = "macrohard/"
CHANGES = "CHANGES.md"
SHOWN = 30  # files or tests listed under one heading


class HandbackStage(CompanyParts):

    def _hand_back(self, tickets: list[Ticket], status: str, release_tag: str | None) -> str:
        """Point the result branch at main and write the change summary; the branch's name."""
        branch = RESULT_PREFIX + self.run_id
        head = self.workspace.head()
        self.workspace.branch(branch, head)
        events = self.transcript.events()  # the run's sandboxes may still be stopping, and saying so
        base = _base(events) or head
        text = change_summary(
            title=self.spec.title, run_id=self.run_id, branch=branch, base=base, head=head, status=status,
            release_tag=release_tag, tickets=tickets, events=events,
            files=self.workspace.files_between(base, head) if base != head else [],
            files_of=lambda t: self.workspace.files_between(f"{t.merge_sha}^1", t.merge_sha) if t.merge_sha else [],
        )
        (self.workspace.run_dir / CHANGES).write_text(text, encoding="utf-8")
        self.transcript.append("handback", branch=branch, sha=head, base=base, changes=CHANGES)
        return branch


def _base(events: list[Event]) -> str | None:
    """The commit the run started from: the source's base, or the empty repository's first commit."""
    for e in events:
        if e.kind == "run.started" and isinstance(e.data.get("source"), dict):
            return str(e.data["source"]["base_sha"])
        if e.kind == "node" and e.data.get("node") == "intake":
            return str(e.data.get("main"))
    return None


def change_summary(
    *, title: str, run_id: str, branch: str, base: str, head: str, status: str, release_tag: str | None,
    tickets: list[Ticket], events: list[Event], files: list[str], files_of: Callable[[Ticket], list[str]],
) -> str:
    merged = [t for t in tickets if t.status == TicketStatus.MERGED]
    left = [t for t in tickets if t.status != TicketStatus.MERGED]
    lines = [
        f"# {title}",
        "",
        f"Made by macrohard run `{run_id}` ({status}): branch `{branch}` at `{head[:12]}`, on top of `{base[:12]}`"
        + (f"; released as `{release_tag}`" if release_tag else "") + ".",
        "",
        f"## What changed and why ({len(files)} files)",
        "",
    ]
    for t in merged:
        changed = files_of(t)
        lines += [f"### {t.id}: {t.title}", "", t.description.strip(), ""]
        lines += [f"- [x] {c}" for c in t.acceptance_criteria]
        if changed:
            lines += ["", "Files: " + _listed(f"`{f}`" for f in changed)]
        lines.append("")
    if not merged:
        lines += ["Nothing landed.", ""]
    added = sorted({(i, e.ticket or "") for e in events if e.kind == "verdict.base" for i in e.data.get("new_tests", [])})
    lines += ["## Tests added", ""]
    lines += [f"- `{test}` ({ticket})" for test, ticket in added[:SHOWN]] or ["None."]
    if len(added) > SHOWN:
        lines.append(f"- ... and {len(added) - SHOWN} more")
    lines += ["", "## For the reviewer", ""]
    lines += _risks(tickets, events) or ["Nothing stood out: every ticket passed its verdict on its first attempt."]
    if left:
        lines += ["", "## Not landed", ""]
        lines += [f"- {t.id}: {t.title} ({t.status.value}{': ' + t.failure_reason if t.failure_reason else ''})" for t in left]
    return "\n".join(lines).rstrip() + "\n"


def _risks(tickets: list[Ticket], events: list[Event]) -> list[str]:
    out = []
    for e in events:
        if e.kind == "baseline" and e.data.get("failed_ids"):
            out.append("- Tests already failing where the run started (not the run's doing): "
                       + _listed(f"`{i}`" for i in e.data["failed_ids"]))
    retried = [f"{t.id} ({t.attempts} attempts)" for t in tickets if t.attempts > 1]
    if retried:
        out.append("- Tickets that needed more than one attempt: " + ", ".join(retried))
    put_back = sorted({f"{e.role}: {f}" for e in events if e.kind in ("territory.put_back", "secret.refused")
                       for f in e.data.get("files") or []})
    if put_back:
        out.append("- Changes put back at a commit (a role wrote outside its territory, or a secret): "
                   + _listed(put_back))
    disputes = [d for t in tickets for d in t.disputes]
    if disputes:
        out.append("- Tests disputed by an engineer: " + _listed(f"{d.test} (ruled {d.ruling or 'open'})" for d in disputes))
    implied = [d for e in events if e.kind == "plan" for d in e.data.get("implied") or []]
    if implied:
        out.append("- Tickets ordered because they name the same files: "
                   + _listed(f"{d['ticket']} after {d['on']}" for d in implied))
    return out


def _listed(items: Iterable[str]) -> str:
    shown = list(items)
    return ", ".join(shown[:SHOWN]) + (f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else "")
