"""Export a run's transcript as OpenTelemetry spans, named by the GenAI conventions.

One trace per run: the run is an ``invoke_workflow`` span; each role working a task
is an ``invoke_agent`` span under it; each model call (``chat``), tool call
(``execute_tool``) and sandbox command (``sandbox.exec``) is a span under its agent.
A command an agent ran through ``run_shell`` sits under that tool call's span; the
orchestrator's own commands (verdicts, main's suite) sit under the run.

Times come from the events, not from the export: spans describe when things
happened. Attribute names follow the OpenTelemetry GenAI semantic conventions
(development status; checked against semantic-conventions-genai in 2026):
``gen_ai.provider.name`` replaced ``gen_ai.system``, which is still set for
backends that read only the older name. Endpoints speak the OpenAI API, so their
provider is ``openai``; the scripted and replayed models, which call no provider,
are ``macrohard.scripted`` and ``macrohard.replay`` (the conventions allow names of
one's own for systems they do not list).

Needs the optional extra: ``pip install 'macrohard[otel]'``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from macrohard.errors import MacrohardError
from macrohard.transcript.log import Event

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import TracerProvider

INSTRUMENTATION_SCOPE = "macrohard.transcript.otel"
# Every model endpoint macrohard talks to speaks the OpenAI API.
PROVIDER = "openai"
SCRIPTED_PROVIDER = "macrohard.scripted"
REPLAY_PROVIDER = "macrohard.replay"
WORKFLOW = "macrohard"
BATCH = 512  # spans per request to a collector


def provider_name(model: str) -> str:
    """gen_ai.provider.name for a model as the transcript names it ("scripted", "scripted (file)", "gpt-4.1")."""
    if model == "scripted" or model.startswith("scripted "):
        return SCRIPTED_PROVIDER
    if model == "replay" or model.startswith(("replay ", "replay:")):
        return REPLAY_PROVIDER
    return PROVIDER


class ExportFailed(MacrohardError):
    """The collector did not take the spans."""

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


def _otel() -> Any:
    """The opentelemetry.trace module, or a clear error when the extra is missing."""
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise MacrohardError(
            "exporting to OpenTelemetry needs the opentelemetry packages",
            hint="pip install 'macrohard[otel]'",
        ) from exc
    return trace


def sdk_tracer_provider(exporter: SpanExporter, *, service_name: str = WORKFLOW) -> SdkTracerProvider:
    """An SDK TracerProvider that sends finished spans to exporter; call shutdown() to flush."""
    _otel()
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise MacrohardError("exporting to OpenTelemetry needs opentelemetry-sdk",
                             hint="pip install 'macrohard[otel]'") from exc
    provider = SdkProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@dataclass
class _Plan:
    """A span to emit: built from the whole transcript first, since a command's
    sandbox.exec event comes before the tool.call event that it belongs to."""

    name: str
    kind: str  # INTERNAL or CLIENT
    start: float
    end: float
    attributes: dict[str, Any]
    error: str | None = None  # status description when the operation failed
    children: list[_Plan] = field(default_factory=list)


@dataclass
class _Session:
    """One role working one task: an invoke_agent span in the making."""

    span: _Plan
    request: Event | None = None
    cursor: float = 0.0  # when the next tool call started: tools run one after another
    last: float = 0.0
    shell: list[_Plan] = field(default_factory=list)  # sandbox commands awaiting their run_shell call


def _ns(ts: float) -> int:
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


def _plan(events: list[Event]) -> _Plan:
    first = events[0]
    run = _Plan(
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
        span = _Plan(name=f"invoke_agent {role or 'agent'}", kind="INTERNAL", start=event.ts, end=event.ts,
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
                _Plan(name=f"chat {model}", kind="CLIENT", start=min(began, event.ts), end=event.ts, attributes=attrs)
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
            span = _Plan(name=f"execute_tool {tool}", kind="INTERNAL", start=min(session.cursor, event.ts),
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
            span = _Plan(name="sandbox.exec", kind="INTERNAL", start=event.ts - duration, end=event.ts,
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


def export_run(events: Iterable[Event], tracer_provider: TracerProvider) -> int:
    """Emit a run's transcript as spans through tracer_provider; returns how many spans."""
    trace = _otel()
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        return 0
    tracer = tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
    kinds = {"INTERNAL": trace.SpanKind.INTERNAL, "CLIENT": trace.SpanKind.CLIENT}

    def emit(plan: _Plan, parent: Any) -> int:
        span = tracer.start_span(
            plan.name,
            context=parent,
            kind=kinds[plan.kind],
            attributes=plan.attributes,
            start_time=_ns(plan.start),
        )
        count = 1
        context = trace.set_span_in_context(span)
        for child in sorted(plan.children, key=lambda c: c.start):
            count += emit(child, context)
        if plan.error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, plan.error))
        span.end(end_time=_ns(max(plan.end, plan.start)))
        return count

    # An empty context makes the run's span a root, whatever span is current in the caller.
    from opentelemetry.context import Context

    return emit(_plan(ordered), Context())


def span_exporter(endpoint: str | None) -> SpanExporter:
    """OTLP over HTTP to `endpoint` (a collector's /v1/traces URL), else the console."""
    _otel()
    if endpoint is None:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise MacrohardError(
            "sending spans to a collector needs opentelemetry-exporter-otlp-proto-http",
            hint="pip install 'macrohard[otel]'",
        ) from exc
    return OTLPSpanExporter(endpoint=endpoint)


@contextmanager
def _exporter_log() -> Iterator[list[str]]:
    """What the exporter logs (retries, the error it gave up on), kept instead of printed."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = logging.getLogger("opentelemetry.exporter")
    handler, propagate = Keep(level=logging.DEBUG), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _cause(said: list[str]) -> str:
    """The most telling thing the exporter said: an OS error ("Connection refused"), else its last words."""
    for message in reversed(said):
        if found := re.search(r"\[Errno -?\d+\] ([^\"'()]+)", message):
            return found.group(1).strip()
    last = " ".join(said[-1].split()) if said else "it gave no reason"
    return last if len(last) <= 200 else last[:200] + " …"


def send_run(events: Iterable[Event], exporter: SpanExporter, where: str = "the collector") -> int:
    """Export a run's spans through `exporter`, in batches; raise ExportFailed unless every batch was taken.

    The SDK's batching processor only logs a failed export: a run sent to a collector
    that is not there would look sent. So the spans are built in memory first, then
    handed to the exporter here, and its answer is checked.
    """
    _otel()
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    built = InMemorySpanExporter()
    provider = SdkProvider()
    provider.add_span_processor(SimpleSpanProcessor(built))
    count = export_run(events, provider)
    spans = list(built.get_finished_spans())
    sent = 0
    with _exporter_log() as said:
        try:
            for start in range(0, len(spans), BATCH):
                batch = spans[start : start + BATCH]
                if exporter.export(batch) != SpanExportResult.SUCCESS:
                    raise ExportFailed(
                        f"{where} did not take the spans ({sent} of {count} sent): {_cause(said)}",
                        "check that an OpenTelemetry collector takes OTLP/HTTP at that URL; it is usually http://HOST:4318/v1/traces",
                    )
                sent += len(batch)
        finally:
            exporter.shutdown()
    return count

