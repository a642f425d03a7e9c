from pathlib import Path

from macrohard.agent.loop import AgentLoop
from macrohard.agent.tools import Confined, ReadFile, WriteFile
from macrohard.llm.scripted import ScriptedModel, load_script
from macrohard.roles import Role
from macrohard.transcript.log import TranscriptLog, read_events


def run_script(tmp_path: Path, script: str, max_steps: int = 10):
    (tmp_path / "s.yaml").write_text(script)
    root = tmp_path / "wt"
    root.mkdir(exist_ok=True)
    fs = Confined(root)
    role = Role(name="engineer", tools=["read_file", "write_file"], max_steps=max_steps, prompt="You code.", path=tmp_path)
    log = TranscriptLog(tmp_path / "t.jsonl", "r")
    loop = AgentLoop(role, ScriptedModel(load_script(tmp_path / "s.yaml")), [ReadFile(fs), WriteFile(fs)], log, task="T-1", ticket="T-1")
    return loop.run("do it"), list(read_events(tmp_path / "t.jsonl")), root


def test_tools_run_and_the_answer_without_calls_finishes(tmp_path):
    result, events, root = run_script(tmp_path, """
engineer:
  T-1:
    - calls: [{write_file: {path: a.py, content: "print(1)"}}]
    - expect: wrote a.py
      say: done
""")
    assert result.finished and result.summary == "done" and result.steps == 2
    assert (root / "a.py").read_text() == "print(1)"
    kinds = [e.kind for e in events]
    assert kinds == ["model.request", "model.response", "tool.call", "model.request", "model.response"]
    assert result.last_event_id == events[-1].id
    assert result.usage.prompt_tokens > 0


def test_malformed_calls_are_answered_not_fatal(tmp_path):
    result, events, _ = run_script(tmp_path, """
engineer:
  T-1:
    - calls: [{tool: write_file, raw: '{"path": '}]
    - expect: not valid JSON
      calls: [{tool: write_file, raw: '{"path": "a.py"}'}]
    - expect: "content: Field required"
      calls: [{write_file: {path: a.py, content: ok}}]
    - calls: [{read_file: {path: ../../etc/passwd}}, {tool: nonexistent_tool, raw: '{}'}]
    - expect: [outside the workspace, "there is no tool 'nonexistent_tool'"]
      say: giving up politely
""")
    assert result.finished
    assert [e.data["ok"] for e in events if e.kind == "tool.call"] == [False, False, True, False, False]


def test_repeated_failure_ends_the_attempt_with_a_reason(tmp_path):
    result, _, _ = run_script(tmp_path, """
engineer:
  T-1:
    - calls: [{tool: write_file, raw: 'nope'}]
    - calls: [{tool: write_file, raw: 'nope'}]
    - calls: [{tool: write_file, raw: 'nope'}]
""")
    assert not result.finished
    assert "3 replies in a row failed" in result.reason and "not valid JSON" in result.reason


def test_step_limit(tmp_path):
    result, _, _ = run_script(tmp_path, """
engineer:
  T-1:
    - calls: [{read_file: {path: missing.txt}}]
    - calls: [{write_file: {path: a, content: b}}]
""", max_steps=2)
    assert not result.finished and result.reason == "step limit of 2 reached"


def test_large_tool_arguments_are_stored_once_and_still_read_back(tmp_path):
    from macrohard.transcript.log import call_arguments

    big = "x = 1\n" * 2000  # 12 kB: over the inline limit
    import json

    import yaml

    script = {"engineer": {"T-1": [{"calls": [{"write_file": {"path": "big.py", "content": big}}]}, {"say": "done"}]}}
    result, events, root = run_script(tmp_path, yaml.safe_dump(script))
    assert (root / "big.py").read_text() == big
    call = next(e for e in events if e.kind == "tool.call")
    assert "arguments" not in call.data and call.data["arguments_ref"]["chars"] > len(big)
    by_id = {e.id: e for e in events}
    # blame and the viewer read them from the model answer
    assert json.loads(call_arguments(call, by_id.get))["content"] == big
    assert (tmp_path / "t.jsonl").read_text().count("x = 1") == 2000  # once (in the answer), not twice


def test_write_file_refuses_content_over_its_cap(tmp_path):
    import pytest

    from macrohard.agent.tools import MAX_WRITE_BYTES, ToolError

    root = tmp_path / "wt"
    root.mkdir()
    with pytest.raises(ToolError, match="over the limit"):
        WriteFile(Confined(root)).run(WriteFile.Args(path="a.txt", content="x" * (MAX_WRITE_BYTES + 1)))
    assert not (root / "a.txt").exists()
