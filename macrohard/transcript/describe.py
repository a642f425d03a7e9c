"""One line saying what an event recorded: the wording of `macrohard audit` and the viewer's timeline.

A line is read by a person, so it never holds a raw Python structure, and text cut to
fit ends at a word with an ellipsis. The values come from a transcript, which may have
been edited by hand: any field may be missing or of another type.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from macrohard.transcript.log import Event

LINE = 160  # the longest description
TEXT = 80  # the longest quote of free text (a tool's result, a reason) inside one


# Kinds of event a run may or may not record (a filter naming one is not a mistake when a run has none).
KNOWN_KINDS = frozenset({
    "model.request", "model.response", "model.overflow", "model.cut", "tool.call", "sandbox.exec", "sandbox.start",
    "sandbox.stop", "git.commit", "git.merge", "git.tag", "dependencies", "dependencies.refused", "stack",
    "image.build", "image.refused", "smoke", "verdict", "verdict.base", "verdict.refused", "main.suite", "final.suite",
    "acceptance", "baseline", "territory.put_back", "secret.refused", "worktree.scrubbed", "dispute", "dispute.ruling",
    "node", "plan", "agent.finished", "agent.nudged", "context.compacted", "ticket.failed", "ticket.blocked",
    "merge.conflict", "approval.requested", "approval", "handback", "executor.retry", "run.started", "run.resumed",
    "run.paused", "run.failed", "run.finished",
})


def shorten(value: object, width: int = TEXT) -> str:
    """Text on one line, cut at a word boundary with an ellipsis when longer than width."""
    text = " ".join(str(value).split())
    return textwrap.shorten(text, width=width, placeholder=" …") if len(text) > width else text


def _value(value: Any) -> str:
    """A field's value as a person reads it: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        return str(value)


def _names(items: Any) -> str:
    return ", ".join(str(i) for i in items) if isinstance(items, list | tuple | dict) else str(items or "")


def _tokens(usage: Any) -> str:
    u = usage if isinstance(usage, dict) else {}
    return f"{u.get('prompt_tokens', 0)}+{u.get('completion_tokens', 0)} tokens"


def _secs(value: Any) -> str:
    return f"{value:.2f}s" if isinstance(value, int | float) and not isinstance(value, bool) else "?s"


def _packages(items: Any) -> str:
    """Each package as name==version and its hash's start: what a reader checks against an index."""
    packages = [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []
    return ", ".join(f"{p.get('name')}=={p.get('version')} (sha256 {str(p.get('sha256') or '')[:12]})" for p in packages)


def describe(event: Event) -> str:
    """One line saying what happened."""
    try:
        return shorten(_describe(event), LINE)
    except (AttributeError, TypeError, ValueError, KeyError):
        # A hand-edited event can hold types the wording does not expect.
        return _fields(event.data)


def _fields(data: dict[str, Any], skip: frozenset[str] = frozenset({"messages", "tickets", "message"})) -> str:
    return shorten(", ".join(f"{k}={shorten(_value(v), 40)}" for k, v in data.items() if k not in skip), LINE)


def _describe(event: Event) -> str:
    d = event.data
    match event.kind:
        case "model.request":
            roles = [str(m.get("role")) for m in d.get("messages") or [] if isinstance(m, dict)]
            return f"step {d.get('step')}: sends {len(roles)} new message(s) ({', '.join(roles)}), {d.get('n_messages', '?')} in all"
        case "model.response":
            calls = [c.get("name") for c in (d.get("message") or {}).get("tool_calls") or [] if isinstance(c, dict)]
            what = f"calls {', '.join(map(str, calls))}" if calls else "answers"
            return f"step {d.get('step')}: {what} ({_tokens(d.get('usage'))}, {_secs(d.get('latency_s', 0))})"
        case "tool.call":
            return f"{d.get('tool')} {'ok' if d.get('ok') else 'error'}: {shorten(_value(d.get('result', '')))}"
        case "sandbox.exec":
            status = "timed out" if d.get("timed_out") else f"exit {d.get('exit_code')}"
            return f"$ {shorten(d.get('command'), TEXT)} -> {status} in {_secs(d.get('duration_s', 0))}"
        case "sandbox.start" | "sandbox.stop":
            verb = "started" if event.kind == "sandbox.start" else "stopped"
            mode = " (read-only)" if d.get("read_only") else ""
            return f"sandbox {d.get('sandbox')}{mode} {verb} in {_secs(d.get('duration_s', 0))}"
        case "git.commit" | "git.merge":
            what = d.get("message") or ("" if d.get("sha") else d.get("detail", ""))
            return f"{str(d.get('sha') or '')[:10]} {what}".strip()
        case "git.tag":
            image = f" (image {d.get('image')} {str(d.get('image_id') or '')[:19]})" if d.get("image") else ""
            packages = f", with {_packages(d.get('packages'))}" if d.get("packages") else ""
            return f"{d.get('tag')} at {str(d.get('sha') or '')[:10]}{image}{packages}"
        case "dependencies":
            return f"{d.get('manifest')}: installed {_packages(d.get('packages'))}"
        case "dependencies.refused":
            return f"{d.get('manifest')} refused ({_names(d.get('requirements'))}): {shorten(d.get('reason'), 100)}"
        case "stack":
            return f"the product is built with the {d.get('stack')} stack ({d.get('image')})"
        case "image.build":
            source = "the deployer's Dockerfile" if d.get("dockerfile") == "Dockerfile" else "the default Dockerfile"
            if d.get("reused"):
                return f"{d.get('image')}: found {str(d.get('image_id') or '')[:19]}, built from this commit before"
            if d.get("error"):
                return f"{d.get('image')} did not build from {source}: {shorten(d.get('error'))}"
            return f"built {d.get('image')} ({str(d.get('image_id') or '')[:19]}) from {source} in {_secs(d.get('duration_s'))}"
        case "image.refused":
            return f"{d.get('image')} not built: {shorten(d.get('reason'), 120)}"
        case "smoke":
            status = "timed out" if d.get("timed_out") else f"exit {d.get('exit_code')}"
            probe = f", probing {d.get('health_url')}" if d.get("health_url") else ""
            verdict = "pass" if d.get("passed") else f"FAIL: {shorten(d.get('reason') or '', 60)}"
            return f"{d.get('image')} {d.get('product')} $ {shorten(d.get('command'), 60)}{probe} -> {status}: {verdict}"
        case "verdict" | "main.suite" | "final.suite" | "acceptance":
            counts = f"{d.get('tests', 0)} tests, {d.get('failures', 0)} failed, {d.get('errors', 0)} errors, {d.get('skipped', 0)} skipped"
            why = f": {shorten(d['reason'])}" if d.get("reason") else ""
            return f"{'pass' if d.get('passed') else 'FAIL'} ({counts}){why}"
        case "verdict.base":
            hollow = d.get("pass_on_base") or []
            return f"{len(d.get('new_tests') or [])} new tests on the base: " + (
                f"{len(hollow)} pass without the change" if hollow else "all fail without the change, as they must")
        case "territory.put_back":
            return f"put back outside {event.role}'s territory: {_names(d.get('files'))}"
        case "secret.refused":
            return f"refused a secret in: {_names(d.get('files'))}"
        case "worktree.scrubbed":
            return f"removed before host git ran: {_names(d.get('removed'))}"
        case "dispute" | "dispute.ruling":
            ruled = f" -> {d.get('ruling')} by {d.get('ruled_by')}" if event.kind == "dispute.ruling" else ""
            return f"{d.get('id')} on {d.get('test')}: {shorten(d.get('reason'), 60)}{ruled}"
        case "node":
            attempt = f" (attempt {d['attempt']})" if "attempt" in d else ""
            return f"{d.get('node')}{attempt}"
        case "plan":
            tickets = [t for t in d.get("tickets") or [] if isinstance(t, dict)]
            return f"{len(tickets)} ticket(s): " + "; ".join(f"{t.get('id')} {t.get('title')}" for t in tickets)
        case "agent.finished":
            return f"{d.get('reason')} after {d.get('steps')} step(s): {shorten(d.get('summary') or '')}"
        case "ticket.failed" | "ticket.blocked":
            return shorten(d.get("reason") or "", LINE)
        case "merge.conflict":
            return "conflicts in " + _names(d.get("conflicts"))
        case "approval.requested":
            return f"waits for a person to approve the {d.get('gate')}"
        case "approval":
            comment = f": {shorten(d['comment'])}" if d.get("comment") else ""
            decided = {"approve": "approved", "reject": "rejected"}.get(str(d.get("decision")), str(d.get("decision")))
            return f"{d.get('gate')} {decided} by {d.get('by')}{comment}"
        case "run.started":
            return f"{d.get('spec_title')} on {d.get('model')}"
        case "run.resumed":
            return f"resumed by {d.get('by')} (it was {d.get('previous_status')})"
        case "run.paused":
            return f"paused: {d.get('reason')}"
        case "run.failed":
            return f"failed: {d.get('error')}"
        case "run.finished":
            failure = f": {d['failure']}" if d.get("failure") else ""
            return f"status {d.get('status')}{failure}"
        case _:
            return _fields(d)
