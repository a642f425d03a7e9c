"""The spans a run's transcript makes, planned from the whole transcript before any is emitted.

One trace per run: the run is an ``invoke_workflow`` span; each role working a task
is an ``invoke_agent`` span under it; each model call (``chat``), tool call
(``execute_tool``) and sandbox command (``sandbox.exec``) is a span under its agent.
A command an agent ran through ``run_shell`` sits under that tool call's span; the
orchestrator's own commands (verdicts, main's suite) sit under the run. Planning comes
first because a command's sandbox.exec event comes before the tool.call event that it
belongs to. Times come from the events, not from the export: spans describe when
things happened.

Attribute names follow the OpenTelemetry GenAI semantic conventions (development
status; checked against semantic-conventions-genai in 2026): ``gen_ai.provider.name``
replaced ``gen_ai.system``, which is still set for backends that read only the older
name. Endpoints speak the OpenAI API, so their provider is ``openai``; the scripted and
replayed models, which call no provider, are ``macrohard.scripted`` and
``macrohard.replay`` (the conventions allow names of one's own for systems they do not
list). Nothing here imports OpenTelemetry: macrohard.transcript.otel emits the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from macrohard.transcript.log import Event

WORKFLOW = "macrohard"
# Every model endpoint macrohard talks to speaks the OpenAI API.
PROVIDER = "openai"
SCRIPTED_PROVIDER = "macrohard.scripted"
REPLAY_PROVIDER = "macrohard.replay"


def provider_name(model: str) -> str:
    """gen_ai.provider.name for a model as the transcript names it ("scripted", "scripted (file)", "gpt-4.1")."""
    if model == "scripted" or model.startswith("scripted "):
        return SCRIPTED_PROVIDER
    if model == "replay" or model.startswith(("replay ", "replay:")):
        return REPLAY_PROVIDER
    return PROVIDER


# GenAI semantic-convention attribute names.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # deprecated name of gen_ai.provider.name
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
ERROR_TYPE = "error.type"
PROCESS_COMMAND_LINE = "process.command_line"
PROCESS_EXIT_CODE = "process.exit.code"


@dataclass
class Plan:
    """A span to emit: built from the whole transcript first, since a command's
    sandbox.exec event comes before the tool.call event that it belongs to."""

    name: str
    kind: str  # INTERNAL or CLIENT
    start: float
    end: float
    attributes: dict[str, Any]
    error: str | None = None  # status description when the operation failed
    children: list[Plan] = field(default_factory=list)


@dataclass
class _Session:
    """One role working one task: an invoke_agent span in the making."""

    span: Plan
    request: Event | None = None
    cursor: float = 0.0  # when the next tool call started: tools run one after another
    last: float = 0.0
    shell: list[Plan] = field(default_factory=list)  # sandbox commands awaiting their run_shell call


def ns(ts: float) -> int:
    return round(ts * 1e9)


def _common(event: Event) -> dict[str, Any]:
    attrs: dict[str, Any] = {"macrohard.run_id": event.run_id, "macrohard.event_id": event.id}
    if event.role is not None:
        attrs["macrohard.role"] = event.role
    if event.ticket is not None:
        attrs["macrohard.ticket"] = event.ticket
    for key in ("task", "step"):
        if event.data.get(key) is not None:
            attrs[f"macrohard.{key}"] = event.data[key]
    return attrs


def plan(events: list[Event]) -> Plan:
    first = events[0]
    run = Plan(
        name=f"invoke_workflow {WORKFLOW}",
        kind="INTERNAL",
        start=min(e.ts for e in events),
        end=max(e.ts for e in events),
        attributes={
            GEN_AI_OPERATION_NAME: "invoke_workflow",
            GEN_AI_WORKFLOW_NAME: WORKFLOW,
            "macrohard.run_id": first.run_id,
            "macrohard.event_id": first.id,
        },
    )
    started = next((e for e in events if e.kind == "run.started"), None)
    run_provider = provider_name(str(started.data.get("model") or "")) if started is not None else PROVIDER
    open_sessions: dict[tuple[str | None, str | None, str | None], _Session] = {}
    attempts: dict[tuple[str | None, str | None, str | None], int] = {}

    def close(key: tuple[str | None, str | None, str | None], end: float) -> None:
        session = open_sessions.pop(key)
        session.span.end = max(end, session.span.start)
        # Commands whose run_shell call was never recorded still belong to the agent.
        session.span.children.extend(session.shell)

    def start(key: tuple[str | None, str | None, str | None], event: Event) -> _Session:
        if key in open_sessions:
            close(key, open_sessions[key].last)
        role, _, task = key
        attempts[key] = attempts.get(key, 0) + 1
        attrs = {
            GEN_AI_OPERATION_NAME: "invoke_agent",
            GEN_AI_PROVIDER_NAME: run_provider,
            GEN_AI_AGENT_NAME: role or "agent",
            GEN_AI_CONVERSATION_ID: f"{event.run_id}/{role}/{task}/{attempts[key]}",
            **_common(event),
        }
        attrs.pop("macrohard.step", None)
        span = Plan(name=f"invoke_agent {role or 'agent'}", kind="INTERNAL", start=event.ts, end=event.ts,
                     attributes=attrs)
        run.children.append(span)
        session = _Session(span=span, cursor=event.ts, last=event.ts)
        open_sessions[key] = session
        return session

    def session_for_shell(event: Event) -> _Session | None:
        for (role, ticket, _), session in open_sessions.items():
            if role == event.role and ticket == event.ticket:
                return session
        return None

    for event in events:
        d = event.data
        key = (event.role, event.ticket, d.get("task"))
        if event.kind == "model.request":
            # Step 1 opens a new conversation: a retry of the task is a new agent span.
            session = open_sessions.get(key)
            if session is None or d.get("step") == 1:
                session = start(key, event)
            session.request = event
            session.last = event.ts
        elif event.kind == "model.response":
            session = open_sessions.get(key) or start(key, event)
            request = session.request
            began = request.ts if request is not None else event.ts - float(d.get("latency_s") or 0.0)
            model = str(d.get("model") or "unknown")
            provider = provider_name(model)
            session.span.attributes[GEN_AI_PROVIDER_NAME] = provider  # the agent's model, as it answered
            usage = d.get("usage") or {}
            attrs = {
                GEN_AI_OPERATION_NAME: "chat",
                GEN_AI_PROVIDER_NAME: provider,
                GEN_AI_SYSTEM: provider,
                # The request event does not record the model asked for; the answer's is the best known.
                GEN_AI_REQUEST_MODEL: model,
                GEN_AI_RESPONSE_MODEL: model,
                GEN_AI_USAGE_INPUT_TOKENS: int(usage.get("prompt_tokens") or 0),
                GEN_AI_USAGE_OUTPUT_TOKENS: int(usage.get("completion_tokens") or 0),
                GEN_AI_CONVERSATION_ID: session.span.attributes[GEN_AI_CONVERSATION_ID],
                **_common(event),
            }
            if request is not None:
                attrs["macrohard.request_event_id"] = request.id
            session.span.children.append(
                Plan(name=f"chat {model}", kind="CLIENT", start=min(began, event.ts), end=event.ts, attributes=attrs)
            )
            session.request = None
            session.cursor = session.last = event.ts
        elif event.kind == "tool.call":
            session = open_sessions.get(key) or start(key, event)
            tool = str(d.get("tool") or "unknown")
            attrs = {
                GEN_AI_OPERATION_NAME: "execute_tool",
                GEN_AI_TOOL_NAME: tool,
                GEN_AI_TOOL_TYPE: "function",
                **_common(event),
            }
            if d.get("call_id") is not None:
                attrs[GEN_AI_TOOL_CALL_ID] = str(d["call_id"])
            ok = bool(d.get("ok", True))
            if not ok:
                attrs[ERROR_TYPE] = "tool_error"
            span = Plan(name=f"execute_tool {tool}", kind="INTERNAL", start=min(session.cursor, event.ts),
                         end=event.ts, attributes=attrs, error=None if ok else str(d.get("result", ""))[:200])
            if tool == "run_shell":
                span.children, session.shell = session.shell, []
            session.span.children.append(span)
            session.cursor = session.last = event.ts
        elif event.kind == "sandbox.exec":
            duration = float(d.get("duration_s") or 0.0)
            timed_out = bool(d.get("timed_out", False))
            attrs = {
                PROCESS_COMMAND_LINE: str(d.get("command", "")),
                "macrohard.timed_out": timed_out,
                **_common(event),
            }
            if d.get("exit_code") is not None:
                attrs[PROCESS_EXIT_CODE] = int(d["exit_code"])
            if timed_out:
                attrs[ERROR_TYPE] = "timeout"
            span = Plan(name="sandbox.exec", kind="INTERNAL", start=event.ts - duration, end=event.ts,
                         attributes=attrs, error="timed out" if timed_out else None)
            owner = session_for_shell(event)
            if owner is not None:
                # Measured inside the sandbox call, so it cannot have begun before the tool call did.
                span.start = max(span.start, owner.cursor)
                owner.shell.append(span)
                owner.last = event.ts
            else:
                run.children.append(span)
        elif event.kind == "agent.finished" and key in open_sessions:
            session = open_sessions[key]
            attrs = session.span.attributes
            attrs["macrohard.finished"] = bool(d.get("finished", False))
            attrs["macrohard.reason"] = str(d.get("reason", ""))
            if d.get("steps") is not None:
                attrs["macrohard.steps"] = int(d["steps"])
            if not d.get("finished", False):
                # The agent stopped on a limit or repeated errors, not because it was done.
                attrs[ERROR_TYPE] = "agent_not_finished"
                session.span.error = str(d.get("reason", "not finished"))
            attrs["macrohard.finished_event_id"] = event.id
            close(key, event.ts)
    for key in list(open_sessions):
        close(key, open_sessions[key].last)
    return run
