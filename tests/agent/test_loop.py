import json
from pathlib import Path

import pytest
import yaml

from macrohard.agent.loop import MAX_NUDGES, AgentLoop, Outcome
from macrohard.agent.tools import MAX_WRITE_BYTES, Confined, ToolError, WriteFile
from macrohard.config import ModelPrice
from macrohard.errors import CallCut
from macrohard.control import RunControl, RunPaused
from macrohard.llm.base import CallWatch, ChatModel, ModelRequest, ModelResponse
from macrohard.llm.scripted import ScriptedModel
from macrohard.models import Budget, Usage
from macrohard.roles import Role
from macrohard.transcript.log import TranscriptLog, call_arguments, read_events


class Recording:
    """A model wrapper that keeps every request it was sent (as sent) and the watch it got."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.requests: list[ModelRequest] = []
        self.watches: list[CallWatch | None] = []

    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse:
        self.requests.append(request.model_copy(deep=True))
        self.watches.append(watch)
        return self.inner.complete(request)


def test_finish_ends_the_session_with_its_summary(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - calls: [{write_file: {path: a.py, content: "print(1)"}}]
    - expect: wrote a.py
      calls: [{finish: {summary: a.py prints 1}}]
""")
    assert s.result.finished and s.result.outcome is Outcome.FINISHED
    assert s.result.summary == "a.py prints 1" and s.result.reason == "done" and s.result.steps == 2
    assert (s.root / "a.py").read_text() == "print(1)"
    assert s.kinds() == ["model.request", "model.response", "tool.call", "model.request", "model.response", "tool.call"]
    assert s.of("tool.call")[-1].data["tool"] == "finish" and s.of("tool.call")[-1].data["ok"]
    # an ordinary answer is replayed as it came and marks nothing
    assert all("replayed_as" not in e.data and e.data["recovered"] == 0 for e in s.of("model.response"))
    assert [e.data["finish_reason"] for e in s.of("model.response")] == ["tool_calls", "tool_calls"]
    assert s.result.last_event_id == s.of("model.response")[-1].id
    assert s.result.usage.prompt_tokens > 0
    # every role is offered finish, whatever its tools
    assert "finish" in s.of("model.request")[0].data["tools"]


def test_a_script_step_without_calls_still_finishes_through_finish(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - calls: [{write_file: {path: a.py, content: "print(1)"}}]
    - say: done
""")
    assert s.result.finished and s.result.summary == "done"
    answer = s.of("model.response")[-1].data["message"]
    assert [c["name"] for c in answer["tool_calls"]] == ["finish"]


def test_a_reply_without_a_call_is_nudged_and_the_session_goes_on(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - say: I will start by writing the module.
      announce: true
    - expect: call finish
      calls: [{write_file: {path: a.py, content: "x = 1"}}]
    - say: done
""")
    assert s.result.finished and (s.root / "a.py").read_text() == "x = 1"
    nudged = s.of("agent.nudged")
    assert [e.data["why"] for e in nudged] == ["no_call"]
    # the nudge went to the model as a user message, recorded with the next request
    assert s.of("model.request")[1].data["messages"][-1]["role"] == "user"


def test_replies_without_calls_end_the_session_unfinished_after_the_nudges(run_agent):
    steps = [{"say": f"Thinking, round {n}.", "announce": True} for n in range(MAX_NUDGES + 1)]
    s = run_agent({"engineer": {"T-1": steps}})
    assert not s.result.finished and s.result.outcome is Outcome.NO_ACTION
    assert f"{MAX_NUDGES + 1} replies in a row without a tool call" in s.result.reason
    assert "\n" not in s.result.reason
    assert len(s.of("agent.nudged")) == MAX_NUDGES and s.result.steps == MAX_NUDGES + 1


def test_a_call_between_replies_without_calls_resets_the_count(run_agent):
    quiet = {"say": "Hmm.", "announce": True}
    act = {"calls": [{"list_files": {}}]}
    steps = [quiet] * MAX_NUDGES + [act] + [quiet] * MAX_NUDGES + [{"say": "done"}]
    s = run_agent({"engineer": {"T-1": steps}}, max_steps=20)
    assert s.result.finished and len(s.of("agent.nudged")) == 2 * MAX_NUDGES


def test_finish_beside_a_call_that_failed_is_refused(run_agent):
    s = run_agent("""
engineer:
  T-1:
    # given raw, a finish call does not end the script's session: the loop refuses it here
    - calls: [{write_file: {path: ../out.py, content: x}}, {tool: finish, raw: '{"summary": "all done"}'}]
    - expect: "not finished: another call of this answer failed"
      calls: [{write_file: {path: a.py, content: x}}, {finish: {summary: really done}}]
""")
    assert s.result.finished and s.result.summary == "really done" and s.result.steps == 2
    assert [(e.data["tool"], e.data["ok"]) for e in s.of("tool.call")] == [
        ("write_file", False), ("finish", False), ("write_file", True), ("finish", True)
    ]


def test_malformed_calls_are_answered_not_fatal(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - calls: [{tool: write_file, raw: '{"path": '}]
    - expect: not valid JSON
      calls: [{tool: write_file, raw: '{"path": "a.py"}'}]
    - expect: "content: Field required"
      calls: [{write_file: {path: a.py, content: ok}}]
    - calls: [{read_file: {path: ../../etc/passwd}}, {tool: nonexistent_tool, raw: '{}'}]
    - expect: [outside the workspace, "there is no tool 'nonexistent_tool'"]
      calls: [{tool: finish, raw: '{}'}]
    - expect: "summary: Field required"
      say: giving up politely
""")
    assert s.result.finished and s.result.summary == "giving up politely"
    assert [e.data["ok"] for e in s.of("tool.call")] == [False, False, True, False, False, False, True]


def test_arguments_nested_past_the_stack_are_answered_not_fatal(run_agent):
    deep = "[" * 20_000 + "]" * 20_000
    s = run_agent({"engineer": {"T-1": [
        {"calls": [{"tool": "write_file", "raw": deep}]},
        {"expect": "nested too deeply", "say": '{"name": "write_file", "arguments": ' + deep + "}", "announce": True},
        {"say": "done"},
    ]}})
    assert s.result.finished and [e.data["ok"] for e in s.of("tool.call")] == [False, True]


def test_malformed_arguments_are_not_sent_back_raw(run_agent):
    recording: list[Recording] = []

    def wrap(model: ChatModel) -> ChatModel:
        recording.append(Recording(model))
        return recording[0]

    s = run_agent("""
engineer:
  T-1:
    - calls: [{tool: write_file, raw: '{"path": "a.py", "content": "unterminated'}]
    - say: done
""", wrap=wrap)
    assert s.result.finished
    replayed = recording[0].requests[-1].messages[2]
    assert replayed.role == "assistant" and "invalid_arguments" in json.loads(replayed.tool_calls[0].arguments)
    # the transcript keeps the answer as the model gave it
    assert s.of("model.response")[0].data["message"]["tool_calls"][0]["arguments"].endswith("unterminated")
    assert "invalid_arguments" in s.of("model.response")[0].data["replayed_as"]["tool_calls"][0]["arguments"]


def test_repeated_failure_ends_the_attempt_with_a_reason(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - calls: [{tool: write_file, raw: 'nope'}]
    - calls: [{tool: write_file, raw: 'nope'}]
    - calls: [{tool: write_file, raw: 'nope'}]
""")
    assert not s.result.finished and s.result.outcome is Outcome.ERRORS
    assert "3 replies in a row failed" in s.result.reason and "not valid JSON" in s.result.reason


def test_step_limit(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - calls: [{read_file: {path: missing.txt}}]
    - calls: [{write_file: {path: a, content: b}}]
""", max_steps=2)
    assert not s.result.finished and s.result.outcome is Outcome.STEP_LIMIT
    assert s.result.reason == "step limit of 2 reached"


def test_a_cut_answer_is_not_run_and_the_model_is_told_to_write_in_parts(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - cut: true
      calls: [{tool: write_file, raw: '{"path": "big.py", "content": "A = 1\\nB = '}]
    - expect: [cut at the output limit, append=true]
      calls: [{write_file: {path: big.py, content: "A = 1\\n"}}]
    - calls: [{write_file: {path: big.py, content: "B = 2\\n", append: true}}]
    - say: done
""")
    assert s.result.finished and (s.root / "big.py").read_text() == "A = 1\nB = 2\n"
    first = s.of("model.response")[0].data
    assert first["finish_reason"] == "length"
    assert s.of("tool.call")[0].data["ok"] is False


def test_a_cut_reply_without_calls_gets_its_own_nudge(run_agent):
    s = run_agent("""
engineer:
  T-1:
    - say: "Here is the whole module: def f("
      announce: true
      cut: true
    - expect: cut at the output limit
      say: done
""")
    assert s.result.finished and [e.data["why"] for e in s.of("agent.nudged")] == ["cut"]


def test_a_watch_is_made_for_every_call_and_passed_to_the_model(run_agent):
    made: list[object] = []

    class Watch:
        def streamed(self, chars: int) -> None: ...
        def cut(self) -> str | None: return None
        def timeout_s(self) -> float | None: return None

    def factory() -> CallWatch:
        made.append(Watch())
        return made[-1]  # type: ignore[return-value]

    recording: list[Recording] = []

    def wrap(model: ChatModel) -> ChatModel:
        recording.append(Recording(model))
        return recording[0]

    s = run_agent("engineer:\n  T-1:\n    - calls: [{list_files: {}}]\n    - say: done\n", wrap=wrap, watch_factory=factory)
    assert s.result.finished and len(made) == 2 and recording[0].watches == made


def test_a_run_control_with_watches_supplies_them(tmp_path):
    class WatchingControl(RunControl):
        def __init__(self) -> None:
            super().__init__(Budget(), {})
            self.made = 0

        def watch(self, on_stream=None) -> CallWatch:  # type: ignore[override]
            self.made += 1
            assert callable(on_stream)  # the live view hears a streamed answer grow
            return object()  # type: ignore[return-value]

    (tmp_path / "s.yaml").write_text("engineer:\n  T-1:\n    - say: done\n")
    control = WatchingControl()
    recording = Recording(ScriptedModel.from_file(tmp_path / "s.yaml"))
    role = Role(name="engineer", tools=[], max_steps=3, prompt="p", path=tmp_path)
    loop = AgentLoop(role, recording, [], TranscriptLog(tmp_path / "t.jsonl", "r"), task="T-1", control=control)
    assert loop.run("go").finished
    assert control.made == 1 and recording.watches[0] is not None


class NoUsage:
    """An endpoint that reports no usage at all."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner

    def complete(self, request: ModelRequest, watch: object = None) -> ModelResponse:
        response = self.inner.complete(request)
        return response.model_copy(update={"usage": Usage(), "model": "m"})


def test_an_answer_without_usage_is_estimated_and_counted_by_the_budget(tmp_path):
    (tmp_path / "s.yaml").write_text("engineer:\n  T-1:\n    - say: done\n")
    control = RunControl(Budget(max_tokens=10**6), {"m": ModelPrice(input=1.0, output=1.0)})
    role = Role(name="engineer", tools=[], max_steps=3, prompt="You code." * 50, path=tmp_path)
    log = TranscriptLog(tmp_path / "t.jsonl", "r")
    loop = AgentLoop(role, NoUsage(ScriptedModel.from_file(tmp_path / "s.yaml")), [], log, task="T-1", control=control)
    result = loop.run("go")
    assert result.finished and result.usage.estimated and result.usage.prompt_tokens > 100
    assert control.spent.tokens == result.usage.total_tokens and control.spent.cost_usd > 0
    response = next(e for e in read_events(tmp_path / "t.jsonl") if e.kind == "model.response")
    assert response.data["usage"]["estimated"] is True
    request = next(e for e in read_events(tmp_path / "t.jsonl") if e.kind == "model.request")
    assert response.data["usage"]["prompt_tokens"] == request.data["estimated_tokens"]


def test_large_tool_arguments_are_stored_once_and_still_read_back(run_agent, tmp_path):
    big = "x = 1\n" * 2000  # 12 kB: over the inline limit
    script = {"engineer": {"T-1": [{"calls": [{"write_file": {"path": "big.py", "content": big}}]}, {"say": "done"}]}}
    s = run_agent(yaml.safe_dump(script))
    assert (s.root / "big.py").read_text() == big
    call = s.of("tool.call")[0]
    assert "arguments" not in call.data and call.data["arguments_ref"]["chars"] > len(big)
    by_id = {e.id: e for e in s.events}
    # blame and the viewer read them from the model answer
    assert json.loads(call_arguments(call, by_id.get))["content"] == big
    assert (tmp_path / "session-1" / "t.jsonl").read_text().count("x = 1") == 2000  # once (in the answer), not twice


def test_write_file_refuses_content_over_its_cap(tmp_path: Path):
    root = tmp_path / "wt"
    root.mkdir()
    with pytest.raises(ToolError, match="over the limit"):
        WriteFile(Confined(root)).run(WriteFile.Args(path="a.txt", content="x" * (MAX_WRITE_BYTES + 1)))
    assert not (root / "a.txt").exists()


def test_a_planner_is_offered_a_finish_that_hands_the_plan_on(tmp_path):
    from macrohard.agent.tools import AddTicket

    role = Role(name="product_manager", tools=["add_ticket"], max_steps=3, prompt="p", path=tmp_path)
    log = TranscriptLog(tmp_path / "t.jsonl", "r")
    planner = AgentLoop(role, ScriptedModel({}), [AddTicket([])], log, task="plan")
    coder = AgentLoop(role.model_copy(update={"name": "engineer"}), ScriptedModel({}), [], log, task="T-1")
    finish = {s.name: s for s in planner.specs}["finish"]
    assert finish.description.startswith("Finish the plan") and finish.parameters["required"] == ["summary"]
    assert {s.name: s for s in coder.specs}["finish"].description.startswith("Finish your work")


class Streams:
    """An endpoint that streams its answer (telling the watch as it grows), or is cut by the watch."""

    def __init__(self, inner: ChatModel, cut: bool = False) -> None:
        self.inner, self.cut, self.model = inner, cut, "m"

    def complete(self, request: ModelRequest, watch=None) -> ModelResponse:
        assert watch is not None
        for chars in (100, 200, 300):
            watch.streamed(chars)
        if self.cut:
            raise CallCut("paused by the user (Ctrl-C)", prompt_tokens=500, completion_tokens=75)
        return self.inner.complete(request)


def test_a_streamed_answer_is_shown_live_and_a_cut_one_pauses_the_run_and_still_counts(tmp_path):
    (tmp_path / "s.yaml").write_text("engineer:\n  T-1:\n    - say: done\n")
    role = Role(name="engineer", tools=[], max_steps=3, prompt="p", path=tmp_path)
    log = TranscriptLog(tmp_path / "t.jsonl", "r")
    heard = []
    log.subscribe(lambda e: heard.append(e) if e.kind == "model.streaming" else None)
    control = RunControl(Budget(), {"m": ModelPrice(input=1.0, output=1.0)})
    model = ScriptedModel.from_file(tmp_path / "s.yaml")
    assert AgentLoop(role, Streams(model), [], log, task="T-1", control=control).run("go").finished
    assert [e.data["chars"] for e in heard] == [100]  # told at most twice a second
    assert not any(e.kind == "model.streaming" for e in read_events(tmp_path / "t.jsonl"))  # never written
    spent = control.spent.tokens
    with pytest.raises(RunPaused, match="Ctrl-C"):
        AgentLoop(role, Streams(model, cut=True), [], log, task="T-1", control=control).run("go")
    assert control.spent.tokens == spent + 575 and control.spent.estimated_tokens >= 575
    cut = next(e for e in read_events(tmp_path / "t.jsonl") if e.kind == "model.cut")
    assert cut.data["usage"]["completion_tokens"] == 75 and cut.data["reason"] == "paused by the user (Ctrl-C)"
