"""The replay model: recorded answers found by (role, task, attempt, step), served offline.

The keys read from a transcript are checked against the truth: a spy between the
company and its scripted model notes each request's role, task, attempt and step while
real runs (on the local sandbox fake) go through second attempts, re-plans, rejected
plans and releases, and arbitrated disputes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun, checkpoint_values
from macrohard.config import Settings
from macrohard.errors import ConfigError, ScriptError
from macrohard.llm.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from macrohard.llm.recording import CallKey, answers_of, read_answers
from macrohard.llm.replay import ReplayError, ReplayModel, ReplaySource
from macrohard.models import ApprovalDecision, Usage
from macrohard.transcript.log import TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace

from fakes import LocalSandboxProvider

sys.path.insert(0, str(Path(__file__).parents[1] / "company"))
from test_disputes import script as dispute_script  # noqa: E402
from test_planning import ANNOUNCE, NEVER, TICKET  # noqa: E402
from test_planning import script as planning_script  # noqa: E402

DEMO = resource_dir("demo")


class Spy:
    """Passes requests to the scripted model and notes where each was asked and what it got."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.calls: dict[CallKey, Message] = {}

    def complete(self, request: ModelRequest, watch: object = None) -> ModelResponse:
        response = self.model.complete(request)  # type: ignore[attr-defined]
        step = 1 + sum(1 for m in request.messages if m.role == "assistant")
        self.calls[CallKey(request.role, request.task, request.attempt, step)] = response.message
        return response


def spied_run(tmp_path: Path, spec: Path, script: Path, **settings: object) -> tuple[CompanyRun, Spy]:
    """A run whose every gate is rejected once, then approved."""
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings)
    run = CompanyRun.create(spec, s, script=script)
    spy = Spy(run.model_for("engineer"))
    run.model_for = lambda role: spy  # type: ignore[method-assign]
    rejected: set[str] = set()

    def decide(payload: dict) -> ApprovalDecision:
        first = payload["gate"] not in rejected
        rejected.add(payload["gate"])
        return ApprovalDecision(decision="reject" if first else "approve", comment="again, please")

    run.execute(LocalSandboxProvider(), decide=decide)
    return run, spy


def write_script(tmp_path: Path, script: dict, spec: str) -> tuple[Path, Path]:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    (tmp_path / "spec.md").write_text(spec)
    return tmp_path / "spec.md", tmp_path / "script.yaml"


def runs_with_sessions(tmp_path: Path, which: str) -> tuple[CompanyRun, Spy]:
    if which == "demo: a second attempt, a rejected plan and release":
        return spied_run(tmp_path, DEMO / "spec.md", DEMO / "script.yaml", approve=["plan", "deploy"])
    if which == "disputes arbitrated over three attempts":
        spec, script = write_script(tmp_path, dispute_script("uphold"), "# calc\n\ntotal(items) sums a list.\n")
        return spied_run(tmp_path, spec, script, max_attempts=3)
    first = [{"calls": [{"add_ticket": TICKET}]}, *[ANNOUNCE] * 4, NEVER]
    second = [{"expect": "ended before you finished it", "calls": [{"add_ticket": TICKET}]}, {"say": "Planned again."}]
    spec, script = write_script(tmp_path, planning_script([first, second]), "# one\n\nA function one() that returns 1.\n")
    return spied_run(tmp_path, spec, script)


SESSIONS = ["demo: a second attempt, a rejected plan and release", "disputes arbitrated over three attempts",
            "an unfinished plan, then another session"]


@pytest.fixture(scope="module")
def recorded_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CompanyRun, Spy]]:
    """Each kind of run, made once for the tests that read it (a cache filled as they ask)."""

    class Runs(dict):  # type: ignore[type-arg]
        def __missing__(self, which: str) -> tuple[CompanyRun, Spy]:
            self[which] = runs_with_sessions(tmp_path_factory.mktemp("recorded"), which)
            return self[which]

    return Runs()


@pytest.mark.parametrize("which", SESSIONS)
def test_every_recorded_answer_is_found_where_the_company_asked_for_it(recorded_runs, which):
    run, spy = recorded_runs[which]
    recorded = read_answers(run.paths.transcript)
    assert set(recorded) == set(spy.calls)
    for key, message in spy.calls.items():
        assert recorded[key].message.tool_calls == message.tool_calls, key
        assert recorded[key].message.content == message.content, key
    assert max(k.attempt for k in spy.calls) >= 2  # the case has sessions past the first


@pytest.mark.parametrize("which", SESSIONS)
def test_a_replay_asks_the_same_calls_and_ends_with_the_same_tickets_and_tree(tmp_path, recorded_runs, which):
    from macrohard.cli.replay import RecordedDecisions

    run, spy = recorded_runs[which]
    source = ReplaySource.of(run.run_id, run.paths.transcript)
    settings = Settings.model_validate({**run.record.settings, "workspaces": tmp_path / "replays"})
    again = CompanyRun.create(run.paths.spec, settings, replay=source)
    assert again.script is None and again.model_name == f"replay of {run.run_id}"
    asked: list[CallKey] = []
    replaying = again.model_for

    class Watch:
        def complete(self, request: ModelRequest, watch: object = None) -> ModelResponse:
            asked.append(CallKey(request.role, request.task, request.attempt, 1 + sum(m.role == "assistant" for m in request.messages)))
            return replaying(request.role).complete(request)

    again.model_for = lambda role: Watch()  # type: ignore[method-assign]
    summary = again.execute(LocalSandboxProvider(), decide=RecordedDecisions(run.run_id, run.paths.transcript, again.paths.transcript))
    assert sorted(asked) == sorted(spy.calls)
    tickets = lambda r: {t.id: (t.status, t.attempts) for t in checkpoint_values(r.paths)["tickets"].values()}  # noqa: E731
    assert tickets(again) == tickets(run) and summary.status == run.record.status
    tree = lambda r: GitWorkspace(r.paths.run_dir).query("ls-tree", "-r", "main")[1]  # noqa: E731
    assert tree(again) == tree(run)
    record = json.loads(again.paths.run_json.read_text())
    assert record["replay"]["run_id"] == run.run_id and record["replay"]["answers"] == len(spy.calls)


def event(seq: int, kind: str, role: str | None = None, ticket: str | None = None, **data: object) -> dict:
    return {"seq": seq, "kind": kind, "role": role, "ticket": ticket, "data": data}


def answer(seq: int, role: str, task: str, step: int, text: str, ticket: str | None = None) -> list[dict]:
    message = {"role": "assistant", "content": text}
    return [event(seq, "model.request", role, ticket, task=task, step=step),
            event(seq + 1, "model.response", role, ticket, task=task, step=step, message=message, model="m",
                  usage={"prompt_tokens": 3, "completion_tokens": 2})]


def events_of(tmp_path: Path, raw: list[dict]) -> Path:
    log = TranscriptLog(tmp_path / "transcript.jsonl", "rec")
    for e in raw:
        log.append(e["kind"], role=e["role"], ticket=e["ticket"], **e["data"])
    return log.path


def test_a_session_asked_again_after_a_crash_is_answered_as_the_run_went_on(tmp_path):
    path = events_of(tmp_path, [
        event(1, "node", ticket="T-1", node="engineer", attempt=1),
        *answer(2, "engineer", "T-1", 1, "before the crash", "T-1"),
        event(4, "run.resumed"),
        event(5, "node", ticket="T-1", node="engineer", attempt=1),
        *answer(6, "engineer", "T-1", 1, "after the resume", "T-1"),
        *answer(8, "engineer", "T-1", 2, "and on", "T-1"),
    ])
    answers = read_answers(path)
    assert answers[CallKey("engineer", "T-1", 1, 1)].message.content == "after the resume"
    assert set(answers) == {CallKey("engineer", "T-1", 1, 1), CallKey("engineer", "T-1", 1, 2)}


def test_events_after_the_recorded_head_are_not_used(tmp_path):
    path = events_of(tmp_path, [*answer(1, "deployer", "release", 1, "first"), *answer(3, "deployer", "release", 1, "appended")])
    assert read_answers(path, until_seq=2)[CallKey("deployer", "release", 1, 1)].message.content == "first"


TOOLS = [ToolSpec(name="write_file", description="", parameters={})]


def ask(model: ReplayModel, role: str, task: str, attempt: int = 1, answers: int = 0) -> ModelResponse:
    messages = [Message(role="user", content="go")]
    for i in range(answers):
        messages += [Message(role="assistant", content=f"a{i}"), Message(role="user", content="ok")]
    return model.complete(ModelRequest(messages=messages, tools=TOOLS, role=role, task=task, attempt=attempt))


def recorded(*answers: tuple[CallKey, int, Message]) -> dict:
    from macrohard.llm.recording import RecordedAnswer

    return {key: RecordedAnswer(event_id=f"ev-{seq:06d}", seq=seq, message=m, usage=Usage(prompt_tokens=7, completion_tokens=5),
                                model="gpt-x", finish_reason="stop") for key, seq, m in answers}


def test_the_answer_is_served_as_recorded_with_its_usage_and_model(tmp_path):
    calls = [ToolCall(id="c1", name="write_file", arguments='{"path": "a"}')]
    model = ReplayModel(recorded((CallKey("engineer", "T-2", 2, 3), 10, Message(role="assistant", content="hi", tool_calls=calls))),
                        source="r1")
    response = ask(model, "engineer", "T-2", attempt=2, answers=2)
    assert response.message.tool_calls == calls and response.message.content == "hi"
    assert response.usage.prompt_tokens == 7 and response.model == "gpt-x" and response.finish_reason == "stop"
    with pytest.raises(ReplayError, match=r"run r1 has no answer for engineer/T-2 attempt 1 step 3") as caught:
        ask(model, "engineer", "T-2", attempt=1, answers=2)
    assert isinstance(caught.value, ScriptError) and "\n" not in str(caught.value)


def test_calls_the_loop_recovered_from_text_are_left_for_it_to_recover_again():
    text = '{"name": "write_file", "arguments": {"path": "a"}}'
    message = Message(role="assistant", content=text,
                      tool_calls=[ToolCall(id="t", name="write_file", arguments='{"path": "a"}', recovered=True)])
    model = ReplayModel(recorded((CallKey("engineer", "T-1", 1, 1), 4, message)), source="r1")
    served = ask(model, "engineer", "T-1")
    assert served.message.content == text and served.message.tool_calls == []


def test_a_fork_replays_answers_before_its_event_and_asks_the_live_model_for_the_rest():
    class Live:
        asked: list[str] = []

        def complete(self, request: ModelRequest, watch: object = None) -> ModelResponse:
            self.asked.append(request.task)
            return ModelResponse(message=Message(role="assistant", content="live"), usage=Usage(), model="live", latency_s=0)

    answers = recorded((CallKey("engineer", "T-1", 1, 1), 4, Message(role="assistant", content="old")),
                       (CallKey("engineer", "T-2", 1, 1), 9, Message(role="assistant", content="old")))
    live = Live()
    model = ReplayModel(answers, source="r1", until_seq=9, live=live)
    assert ask(model, "engineer", "T-1").message.content == "old"
    assert ask(model, "engineer", "T-2").message.content == "live"  # recorded at the fork's event or after
    assert ask(model, "engineer", "T-3").message.content == "live"  # never recorded
    assert live.asked == ["T-2", "T-3"]


def test_a_source_names_an_unknown_event_or_a_run_with_nothing_to_replay(tmp_path):
    path = events_of(tmp_path, [*answer(1, "deployer", "release", 1, "notes"), event(3, "git.commit")])
    assert ReplaySource.of("r1", path).answers == 1
    assert ReplaySource.of("r1", path, from_event="ev-000003").answers == 1
    assert ReplaySource.of("r1", path, from_event="ev-000002").answers == 0  # from the answer itself: it is the live model's
    with pytest.raises(ConfigError, match="no event ev-000099"):
        ReplaySource.of("r1", path, from_event="ev-000099")
    empty = events_of(tmp_path / "e", [event(1, "run.started")])
    with pytest.raises(ConfigError, match="recorded no model answer"):
        ReplaySource.of("r2", empty)
    with pytest.raises(ConfigError, match="needs a live model"):
        ReplaySource.of("r1", path, from_event="ev-000003").models(None)


def test_answers_of_ignores_what_no_role_asked(tmp_path):
    path = events_of(tmp_path, [event(1, "model.response", None, None, task="x", step=1, message={"role": "assistant"})])
    assert answers_of(list(read_events(path))) == {}
