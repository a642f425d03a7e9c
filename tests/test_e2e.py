"""`macrohard demo` end to end: real LangGraph, git, Docker sandboxes and pytest; scripted model."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from macrohard.cli import app
from macrohard.config import SandboxSettings
from macrohard.sandbox.docker import DockerSandboxProvider
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def test_demo_builds_a_released_repo_in_docker(tmp_path, monkeypatch, docker_client, sandbox_image):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--workspaces", "ws"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "release:    v0.1.0" in result.output
    (run_dir,) = (tmp_path / "ws").iterdir()
    run_id = run_dir.name

    history = GitWorkspace(run_dir).history("main")
    assert len([c for c in history if c.parents == 2]) >= 3
    roles = {c.trailers["Macrohard-Role"] for c in history if "Macrohard-Run" in c.trailers}
    assert len(roles - {"orchestrator"}) >= 3
    assert all(c.trailers.get("Macrohard-Run") == run_id for c in history if c.author != "macrohard")
    assert GitWorkspace(run_dir).head("v0.1.0") == history[0].sha

    transcript = run_dir / "transcript.jsonl"
    assert verify_chain(transcript) is None
    events = list(read_events(transcript))
    runs = [e for e in events if e.kind == "sandbox.exec" and e.ticket == "T-2" and e.role == "orchestrator"]
    # The verdict fails, then passes; after the pass, in the same sandbox, T-2's tests fail on its base, as they must.
    assert [e.data["exit_code"] == 0 for e in runs] == [False, True, False]
    on_base = {e.data["event_id"] for e in events if e.kind == "verdict.base" and e.ticket == "T-2"}
    assert [e.id in on_base for e in runs] == [False, False, True]
    assert {e.data["sandbox"] for e in runs} == {"verdict:T-2"}
    responses = [e for e in events if e.kind == "model.response"]
    assert responses and all(e.data["usage"]["prompt_tokens"] > 0 and "latency_s" in e.data for e in responses)

    # The product's own tests pass again in a fresh sandbox.
    provider = DockerSandboxProvider(SandboxSettings(), docker_client)
    with provider.start(run_dir / "repo", labels={"macrohard.run": "e2e-check"}) as box:
        rerun = box.exec("python3 -m pytest -q -p no:cacheprovider")
    assert rerun.exit_code == 0, rerun.output
    assert "12 passed" in rerun.output

    # Nothing of the run is left running.
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={run_id}"}) == []

    # run.json's release names the image and its smoke command; the image runs it, hardened, for anyone.
    release = json.loads((run_dir / "run.json").read_text())["release"]
    smoke = release["smoke"]
    assert release["image"] == "textstats:0.1.0" and smoke["command"] == "python3 -m textstats docs/PRD.md --top 5"
    assert smoke["exit_code"] == 0 and smoke["kind"] == "cli"
    image = docker_client.images.get(release["image"])
    assert image.id == release["image_id"] and image.labels["macrohard.commit"] == history[0].sha
    hardened = {"network_mode": "none", "user": "65534:65534", "read_only": True, "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges"], "tmpfs": {"/tmp": "size=16m"}, "mem_limit": "256m",
                "pids_limit": 64, "remove": True}
    out = docker_client.containers.run(image.id, ["sh", "-c", smoke["command"]], **hardened).decode()
    assert out.startswith("lines: ") and "words: " in out
    # As the README shows it: the product's files are in /app.
    out = docker_client.containers.run("textstats:0.1.0", ["python3", "-m", "textstats", "/app/docs/PRD.md", "--top", "1"],
                                       remove=True).decode()
    assert out.splitlines()[0].startswith("lines: ") and len(out.splitlines()) == 3

    audit = CliRunner().invoke(app, ["audit", run_id, "--workspaces", "ws", "--json"], catch_exceptions=False)
    assert audit.exit_code == 0
    report = build_report(events)
    assert report.status == "done" and report.totals.model_calls == len(responses)
    assert '"status": "done"' in audit.output

    # blame: a line of the product leads to the model answer that wrote it.
    blamed = CliRunner().invoke(
        app, ["blame", run_id, "textstats/freq.py:20", "--workspaces", "ws", "--json"], catch_exceptions=False
    )
    assert blamed.exit_code == 0, blamed.output
    found = json.loads(blamed.output)
    assert "Counter(words(text))" in found["text"]
    assert found["commit"]["trailers"]["Macrohard-Ticket"] == "T-2"
    answer = next(e for e in events if e.id == found["answer"]["event_id"])
    assert answer.kind == "model.response" and answer.role == "engineer"
    assert any("Counter(words(text))" in c["arguments"] for c in answer.data["message"]["tool_calls"])

    # trace: the run reaches an OpenTelemetry collector over OTLP/HTTP.
    received: list[bytes] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
        traced = CliRunner().invoke(app, ["trace", run_id, "--workspaces", "ws", "--endpoint", endpoint])
    finally:
        server.shutdown()
    assert traced.exit_code == 0, traced.output
    exported = re.search(rf"exported (\d+) spans to {re.escape(endpoint)}", traced.output)
    assert exported and int(exported.group(1)) > len(responses)
    assert received and b"chat scripted" in b"".join(received) and b"gen_ai.usage.input_tokens" in b"".join(received)
