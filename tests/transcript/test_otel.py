"""OpenTelemetry export of a real demo run's transcript, captured in memory."""

from __future__ import annotations

from collections import Counter
import sys
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install -e '.[dev]'")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from macrohard._resources import resource_dir  # noqa: E402
from macrohard.errors import MacrohardError  # noqa: E402
from macrohard.transcript import otel  # noqa: E402
from macrohard.transcript.log import Event, read_events  # noqa: E402
from macrohard.transcript.otel import export_run, sdk_tracer_provider  # noqa: E402


DEMO = resource_dir("demo")


@pytest.fixture(scope="module")
def events(demo_run_dir: Path) -> list[Event]:
    return list(read_events(demo_run_dir / "transcript.jsonl"))


def export(events: list[Event]) -> tuple[int, list[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    count = export_run(events, provider)
    return count, list(exporter.get_finished_spans())


@pytest.fixture(scope="module")
def spans(events: list[Event]) -> list[ReadableSpan]:
    count, spans = export(events)
    assert count == len(spans)
    return spans


def ns(ts: float) -> int:
    return round(ts * 1e9)


def op(span: ReadableSpan) -> str | None:
    value = (span.attributes or {}).get("gen_ai.operation.name")
    return str(value) if value is not None else None


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


def test_one_span_per_model_call_tool_call_and_sandbox_command(events: list[Event], spans: list[ReadableSpan]) -> None:
    kinds = Counter(e.kind for e in events)
    ops = Counter(op(s) for s in spans)
    assert ops["chat"] == kinds["model.response"] > 0
    assert ops["execute_tool"] == kinds["tool.call"] > 0
    assert sum(s.name == "sandbox.exec" for s in spans) == kinds["sandbox.exec"] > 0
    # Every agent of the demo finished, so each agent span is one agent.finished.
    assert ops["invoke_agent"] == kinds["agent.finished"]
    assert ops["invoke_workflow"] == 1
    assert len({s.context.trace_id for s in spans}) == 1


def test_the_run_is_the_root_and_agents_hang_under_it(events: list[Event], spans: list[ReadableSpan]) -> None:
    (root,) = [s for s in spans if s.parent is None]
    assert op(root) == "invoke_workflow" and root.attributes["macrohard.run_id"] == events[0].run_id
    assert root.start_time == ns(events[0].ts) and root.end_time == ns(events[-1].ts)
    agents = [s for s in spans if op(s) == "invoke_agent"]
    assert all(parent_of(s, spans) is root for s in agents)
    names = Counter(s.name for s in agents)
    # T-2's engineer ran twice (its first attempt failed the tests): two agent spans.
    assert names["invoke_agent engineer"] == 4 and names["invoke_agent product_manager"] == 1
    t2 = sorted((s for s in agents if s.attributes.get("macrohard.ticket") == "T-2"
                 and s.attributes["gen_ai.agent.name"] == "engineer"), key=lambda s: s.start_time)
    assert len(t2) == 2 and t2[0].end_time <= t2[1].start_time
    assert t2[0].attributes["gen_ai.conversation.id"] != t2[1].attributes["gen_ai.conversation.id"]


def test_model_calls_carry_genai_attributes_and_event_times(events: list[Event], spans: list[ReadableSpan]) -> None:
    by_id = {e.id: e for e in events}
    chats = [s for s in spans if op(s) == "chat"]
    for span in chats:
        a = span.attributes
        response = by_id[a["macrohard.event_id"]]
        request = by_id[a["macrohard.request_event_id"]]
        assert response.kind == "model.response" and request.kind == "model.request"
        assert span.kind == SpanKind.CLIENT
        assert span.name == f"chat {response.data['model']}"
        # The scripted model is no provider's: not "openai", as an endpoint's would be.
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "macrohard.scripted"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == response.data["model"]
        assert a["gen_ai.usage.input_tokens"] == response.data["usage"]["prompt_tokens"]
        assert a["gen_ai.usage.output_tokens"] == response.data["usage"]["completion_tokens"]
        assert (span.start_time, span.end_time) == (ns(request.ts), ns(response.ts))
        assert a["macrohard.role"] == response.role and a["macrohard.step"] == response.data["step"]
        agent = parent_of(span, spans)
        assert agent is not None and op(agent) == "invoke_agent"
        assert agent.attributes["gen_ai.agent.name"] == response.role
        assert agent.attributes["gen_ai.provider.name"] == "macrohard.scripted"
        assert agent.attributes["macrohard.task"] == response.data["task"]
        assert agent.start_time <= span.start_time <= span.end_time <= agent.end_time
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in chats) == sum(
        e.data["usage"]["prompt_tokens"] for e in events if e.kind == "model.response")


def test_tool_calls_sit_under_their_agent_in_order(events: list[Event], spans: list[ReadableSpan]) -> None:
    by_id = {e.id: e for e in events}
    tools = [s for s in spans if op(s) == "execute_tool"]
    for span in tools:
        a = span.attributes
        call = by_id[a["macrohard.event_id"]]
        assert call.kind == "tool.call"
        assert span.name == f"execute_tool {call.data['tool']}"
        assert a["gen_ai.tool.name"] == call.data["tool"] and a["gen_ai.tool.call.id"] == call.data["call_id"]
        assert span.end_time == ns(call.ts) and span.start_time <= span.end_time
        assert (span.status.status_code == StatusCode.ERROR) == (not call.data["ok"])
        agent = parent_of(span, spans)
        assert agent is not None and op(agent) == "invoke_agent"
        assert (agent.attributes["gen_ai.agent.name"], agent.attributes.get("macrohard.ticket")) == (call.role, call.ticket)
        # A tool call starts after the answer that asked for it.
        siblings = [s for s in spans if s.parent and s.parent.span_id == agent.context.span_id and op(s) == "chat"]
        asked = max((s for s in siblings if s.end_time <= span.end_time), key=lambda s: s.end_time)
        assert asked.end_time <= span.start_time


def test_sandbox_commands_hang_under_run_shell_or_the_run(events: list[Event], spans: list[ReadableSpan]) -> None:
    by_id = {e.id: e for e in events}
    execs = [s for s in spans if s.name == "sandbox.exec"]
    under_shell = 0
    for span in execs:
        a = span.attributes
        event = by_id[a["macrohard.event_id"]]
        assert a["process.command_line"] == event.data["command"]
        assert a["process.exit.code"] == event.data["exit_code"]
        assert a["macrohard.timed_out"] is False
        assert span.end_time == ns(event.ts)
        assert span.start_time <= span.end_time
        assert span.start_time >= ns(event.ts - event.data["duration_s"])
        parent = parent_of(span, spans)
        assert parent is not None
        if event.role == "orchestrator":
            assert op(parent) == "invoke_workflow"
        else:
            under_shell += 1
            assert parent.name == "execute_tool run_shell"
            assert (parent.attributes["macrohard.role"], parent.attributes.get("macrohard.ticket")) == (
                event.role, event.ticket)
            command = by_id[parent.attributes["macrohard.event_id"]].data["arguments"]
            assert '"command"' in command
            assert parent.start_time <= span.start_time and span.end_time <= parent.end_time
    assert under_shell == sum(e.kind == "tool.call" and e.data["tool"] == "run_shell" for e in events)


def test_failures_become_error_statuses(events: list[Event]) -> None:
    call = next(e for e in events if e.kind == "tool.call")
    failed = call.model_copy(update={"data": {**call.data, "ok": False, "result": "error: no such file"}})
    timeout = next(e for e in events if e.kind == "sandbox.exec" and e.role == "orchestrator")
    slow = timeout.model_copy(update={"data": {**timeout.data, "timed_out": True, "exit_code": 124}})
    patched = [failed if e.id == call.id else slow if e.id == timeout.id else e for e in events]
    _, spans = export(patched)
    tool = next(s for s in spans if s.attributes.get("macrohard.event_id") == call.id)
    assert tool.status.status_code == StatusCode.ERROR and tool.attributes["error.type"] == "tool_error"
    exec_span = next(s for s in spans if s.attributes.get("macrohard.event_id") == timeout.id)
    assert exec_span.status.status_code == StatusCode.ERROR and exec_span.attributes["error.type"] == "timeout"
    assert exec_span.attributes["macrohard.timed_out"] is True


def test_the_sdk_provider_batches_spans_until_shutdown(events: list[Event]) -> None:
    exporter = InMemorySpanExporter()
    provider = sdk_tracer_provider(exporter, service_name="macrohard-test")
    count = export_run(events, provider)
    provider.shutdown()
    spans = exporter.get_finished_spans()
    assert len(spans) == count > 0
    assert spans[0].resource.attributes["service.name"] == "macrohard-test"


def test_an_empty_transcript_exports_nothing() -> None:
    assert export([]) == (0, [])


def test_a_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, events: list[Event]) -> None:
    # None in sys.modules makes the import fail, as if the package were not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MacrohardError) as caught:
        otel.export_run(events, object())  # type: ignore[arg-type]
    assert caught.value.hint is not None and "macrohard[otel]" in caught.value.hint


def test_each_model_gets_its_provider_name() -> None:
    assert otel.provider_name("scripted") == otel.provider_name("scripted (/x/script.yaml)") == "macrohard.scripted"
    assert otel.provider_name("replay") == otel.provider_name("replay of 20261122-121040-be37") == "macrohard.replay"
    assert otel.provider_name("gpt-4.1") == otel.provider_name("scripted-like-name") == "openai"


class _Collector:
    """A real OTLP/HTTP endpoint on loopback that answers every export with `status`."""

    def __init__(self, status: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_sent_to_a_collector_are_counted_only_when_it_takes_them(events: list[Event]) -> None:
    collector = _Collector(200)
    try:
        count = otel.send_run(events, otel.span_exporter(collector.url))
    finally:
        collector.close()
    assert count > 0 and collector.received and b"chat scripted" in b"".join(collector.received)


@pytest.mark.parametrize("answer", ["refused", 400])
def test_a_collector_that_is_not_there_or_refuses_is_an_error(events: list[Event], answer: object) -> None:
    if answer == "refused":
        import socket

        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1/traces"
        collector = None
    else:
        collector = _Collector(int(answer))  # type: ignore[call-overload]
        url = collector.url
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # A short deadline: the exporter retries a refused connection until it passes.
        with pytest.raises(otel.ExportFailed) as caught:
            otel.send_run(events, OTLPSpanExporter(endpoint=url, timeout=1.5), f"the collector at {url}")
    finally:
        if collector is not None:
            collector.close()
    message = str(caught.value)
    assert f"the collector at {url} did not take the spans (0 of " in message
    assert "\n" not in message and "Traceback" not in message
    if answer == "refused":
        assert "Connection refused" in message
