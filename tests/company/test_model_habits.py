"""The whole company against a model with real endpoints' habits, over real HTTP.

The model (tests/company/habits.py) knows the demo's work but announces before acting,
writes tool calls into its text in each common form, has its long writes cut at the
output limit, looks around in circles, often sends no usage, reasons aloud and has a
small window that it enforces with HTTP 400 and 429. The run must still build the demo's
product, release it and pass hidden acceptance tests.
"""

import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer
from habits import HabitModel

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun, RunSummary
from macrohard.config import ModelSettings, Settings
from macrohard.llm.openai import OpenAIChatModel
from macrohard.llm.scripted import load_script
from macrohard.roles import load_roles
from macrohard.transcript.log import read_events, verify_chain

from fakes import LocalSandboxProvider

DEMO = resource_dir("demo")
ACCEPTANCE = Path(__file__).parent / "acceptance" / "textstats"


@pytest.fixture
def habits():
    model = HabitModel(load_script(DEMO / "script.yaml"), load_roles(resource_dir("roles")), window_tokens=2600, tester_window_tokens=2300)
    server = ChatServer(responder=model).start()
    yield model, server
    server.stop()


def run_with(server: ChatServer, tmp_path: Path) -> CompanyRun:
    settings = Settings(
        workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), max_parallel=2, acceptance=ACCEPTANCE,
        # The agent is told a larger window than the server enforces: its 400s and 429s must be answered.
        model=ModelSettings(model="habits", base_url=server.base_url, api_key_env="HABITS_KEY",
                            context_window=16_384, max_tokens=1024, max_retries=1),
    )
    return CompanyRun.create(DEMO / "spec.md", settings, model_factory=OpenAIChatModel)


def check(company: CompanyRun, summary: RunSummary, model: HabitModel) -> None:
    assert summary.status == "done", summary.failure
    assert summary.release and summary.release["acceptance_passed"] == summary.release["acceptance_total"] == 3
    events = list(read_events(company.paths.transcript))
    assert verify_chain(company.paths.transcript) is None
    served = Counter(s.rsplit(":", 1)[1] for s in model.served)
    written = sum(n for kind, n in served.items() if kind.startswith("text-call"))
    assert served["announce"] >= 8 and served["cut"] >= 2
    assert all(served[f"text-call-{form}"] for form in ("bare", "fenced", "tags"))
    # Each habit met its answer.
    nudged = Counter(e.data["why"] for e in events if e.kind == "agent.nudged")
    assert nudged["no_call"] == served["announce"] and nudged["stuck"] >= 4
    cut = [e for e in events if e.kind == "tool.call" and e.data["result"].startswith("error: your answer was cut")]
    assert len(cut) == served["cut"]  # a cut call is not run, and the model is told to write in parts
    assert sum(e.data.get("recovered", 0) for e in events if e.kind == "model.response") == written
    assert {400, 429} <= set(model.refused)
    overflows = [e for e in events if e.kind == "model.overflow"]
    assert len(overflows) == len(model.refused) and any(e.kind == "context.compacted" for e in events)
    responses = [e for e in events if e.kind == "model.response"]
    assert any(e.data["usage"]["estimated"] for e in responses) and any(not e.data["usage"]["estimated"] for e in responses)
    assert any(e.data["message"].get("reasoning") for e in responses)
    assert any(len(e.data["message"].get("tool_calls", [])) > 1 for e in responses)  # parallel calls
    assert not any(e.kind == "agent.finished" and not e.data["finished"] for e in events)


def test_a_model_with_real_habits_builds_releases_and_passes_hidden_tests(habits, tmp_path, monkeypatch):
    model, server = habits
    monkeypatch.setenv("HABITS_KEY", "sk-habits")
    company = run_with(server, tmp_path)
    check(company, company.execute(LocalSandboxProvider()), model)


@pytest.mark.docker
def test_the_same_on_docker_sandboxes(habits, tmp_path, monkeypatch, docker_client, sandbox_image):
    from macrohard.sandbox.docker import DockerSandboxProvider

    model, server = habits
    monkeypatch.setenv("HABITS_KEY", "sk-habits")
    company = run_with(server, tmp_path)
    check(company, company.execute(DockerSandboxProvider(Settings().sandbox, docker_client)), model)


def test_the_habit_model_refuses_a_request_over_its_window(habits):
    model, server = habits

    messages = [{"role": "system", "content": model.roles["engineer"].prompt}, {"role": "user", "content": "x" * 20_000}]
    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=json.dumps({"messages": messages}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400 and b"context_length_exceeded" in refused.value.read()
