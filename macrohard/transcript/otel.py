"""Export a run's transcript as OpenTelemetry spans, named by the GenAI conventions.

macrohard.transcript.spans plans the spans (which, under which, when, with what
attributes); this module emits them through the OpenTelemetry SDK and sends them to a
collector, or prints them, checking that every batch was taken.

Needs the optional extra: ``pip install 'macrohard[otel]'``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from macrohard.errors import MacrohardError
from macrohard.transcript.log import Event
from macrohard.transcript.spans import WORKFLOW, Plan, ns, provider_name
from macrohard.transcript.spans import plan as plan_spans

__all__ = ["ExportFailed", "export_run", "provider_name", "sdk_tracer_provider", "send_run", "span_exporter"]

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import TracerProvider

INSTRUMENTATION_SCOPE = "macrohard.transcript.otel"
BATCH = 512  # spans per request to a collector


class ExportFailed(MacrohardError):
    """The collector did not take the spans."""


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


def export_run(events: Iterable[Event], tracer_provider: TracerProvider) -> int:
    """Emit a run's transcript as spans through tracer_provider; returns how many spans."""
    trace = _otel()
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        return 0
    tracer = tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
    kinds = {"INTERNAL": trace.SpanKind.INTERNAL, "CLIENT": trace.SpanKind.CLIENT}

    def emit(plan: Plan, parent: Any) -> int:
        span = tracer.start_span(
            plan.name,
            context=parent,
            kind=kinds[plan.kind],
            attributes=plan.attributes,
            start_time=ns(plan.start),
        )
        count = 1
        context = trace.set_span_in_context(span)
        for child in sorted(plan.children, key=lambda c: c.start):
            count += emit(child, context)
        if plan.error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, plan.error))
        span.end(end_time=ns(max(plan.end, plan.start)))
        return count

    # An empty context makes the run's span a root, whatever span is current in the caller.
    from opentelemetry.context import Context

    return emit(plan_spans(ordered), Context())


def span_exporter(endpoint: str | None) -> SpanExporter:
    """OTLP over HTTP to `endpoint` (a collector's /v1/traces URL), else the console."""
    _otel()
    if endpoint is None:
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # Its default `out` is the sys.stdout of when the SDK was imported, which may be gone by now.
        return ConsoleSpanExporter(out=sys.stdout)
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

