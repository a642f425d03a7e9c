import json

import pytest
import yaml

from macrohard.errors import ScriptError
from macrohard.llm.base import Message, ModelRequest, ToolSpec
from macrohard.llm.scripted import ScriptedModel

SCRIPT = """
engineer:
  T-1:
    - say: writing
      calls:
        - write_file: {path: a.py, content: "x = 1\\n"}
    - expect: "wrote a.py"
      calls:
        - tool: write_file
          raw: '{"path": "a.py", '
    - say: done
    # the second session: attempt 2
    - expect: "tests failed"
      say: fixed
"""

TOOLS = [ToolSpec(name="write_file", description="", parameters={})]


def request(history, role="engineer", task="T-1", tools=TOOLS, attempt=1):
    return ModelRequest(messages=history, tools=tools, role=role, task=task, attempt=attempt)


def model(tmp_path, text=SCRIPT):
    path = tmp_path / "script.yaml"
    path.write_text(text)
    return ScriptedModel.from_file(path)


def converse(m, *tool_results, attempt=1, first="go"):
    """Replay a conversation, answering each step with the next tool result."""
    history = [Message(role="user", content=first)]
    answers = []
    for result in (None, *tool_results):
        if result is not None:
            history.append(Message(role="tool", tool_call_id="x", content=result))
        answer = m.complete(request(history, attempt=attempt))
        answers.append(answer)
        history.append(answer.message)
    return answers


def test_replays_a_session_step_by_step_with_estimated_usage(tmp_path):
    first, second, third = converse(model(tmp_path), "wrote a.py (6 bytes)", "error: bad JSON")
    assert first.message.content == "writing"
    assert yaml.safe_load(first.message.tool_calls[0].arguments) == {"path": "a.py", "content": "x = 1\n"}
    assert first.usage.estimated and first.usage.prompt_tokens >= 1
    assert second.message.tool_calls[0].arguments == '{"path": "a.py", '
    assert third.message.content == "done" and not third.message.tool_calls


def test_the_attempt_picks_the_session(tmp_path):
    (answer,) = converse(model(tmp_path), attempt=2, first="the tests failed")
    assert answer.message.content == "fixed"
    with pytest.raises(ScriptError, match=r"engineer/T-1 has 2 session\(s\), and session 3 was asked for"):
        converse(model(tmp_path), attempt=3)


def test_it_keeps_no_position_so_a_fresh_model_answers_the_same(tmp_path):
    history = [Message(role="user", content="go")]
    a = model(tmp_path).complete(request(history))
    b = model(tmp_path).complete(request(history))
    assert a.message == b.message


def test_running_out_names_the_step(tmp_path):
    with pytest.raises(ScriptError, match=r"engineer/T-1 ran out after 4 steps \(step 5 was asked for\)"):
        converse(model(tmp_path), "more", attempt=2, first="the tests failed")


def test_unmet_expectation_names_the_step(tmp_path):
    with pytest.raises(ScriptError, match=r"engineer/T-1 step 2 expects 'wrote a.py'"):
        converse(model(tmp_path), "something else")


def test_a_tool_the_role_lacks_fails_loudly(tmp_path):
    m = model(tmp_path)
    with pytest.raises(ScriptError, match="calls tool 'write_file', which engineer does not have"):
        m.complete(request([Message(role="user", content="go")], tools=[]))


def test_unknown_task_and_bad_yaml(tmp_path):
    m = model(tmp_path)
    with pytest.raises(ScriptError, match="no steps for tester/T-1"):
        m.complete(request([Message(role="user", content="go")], role="tester"))
    with pytest.raises(ScriptError, match="not valid YAML"):
        model(tmp_path, "engineer: [unclosed")


FINISHING = [*TOOLS, ToolSpec(name="finish", description="", parameters={})]


def test_a_step_without_calls_is_a_finish_call_when_finish_is_offered(tmp_path):
    m = model(tmp_path)
    history = [Message(role="user", content="the tests failed")]
    answer = m.complete(request(history, tools=FINISHING, attempt=2))
    assert answer.message.content is None and answer.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in answer.message.tool_calls] == [("finish", {"summary": "fixed"})]
    # without finish among the tools (another caller), it stays a plain reply
    assert m.complete(request(history, attempt=2)).message.content == "fixed"


def test_finish_announce_and_cut_steps(tmp_path):
    m = model(tmp_path, """
engineer:
  T-1:
    - say: I will read the files first.
      announce: true
    - cut: true
      calls: [{tool: write_file, raw: '{"path": "a.py", "content": "x'}]
    - calls: [{finish: {summary: done in one}}]
    # given raw, a finish does not end the session
    - calls: [{tool: finish, raw: '{}'}]
    - say: done in two
""")
    history = [Message(role="user", content="go")]
    announced = m.complete(request(history, tools=FINISHING))
    assert announced.message.content == "I will read the files first." and not announced.message.tool_calls
    assert announced.finish_reason == "stop"
    history += [announced.message, Message(role="user", content="call a tool")]
    cut = m.complete(request(history, tools=FINISHING))
    assert cut.finish_reason == "length"
    history += [cut.message, Message(role="tool", tool_call_id="x", content="error: cut")]
    finished = m.complete(request(history, tools=FINISHING))
    assert json.loads(finished.message.tool_calls[0].arguments) == {"summary": "done in one"}
    # the third step's finish ended the first session: the second has the last two steps
    second = [Message(role="user", content="again")]
    raw = m.complete(request(second, tools=FINISHING, attempt=2))
    assert raw.message.tool_calls[0].arguments == "{}"
    second += [raw.message, Message(role="tool", tool_call_id="y", content="error: summary required")]
    last = m.complete(request(second, tools=FINISHING, attempt=2))
    assert json.loads(last.message.tool_calls[0].arguments) == {"summary": "done in two"}


def test_announce_with_calls_is_a_script_error(tmp_path):
    with pytest.raises(ScriptError, match="announce: true"):
        model(tmp_path, "engineer:\n  T-1:\n    - announce: true\n      calls: [{write_file: {path: a, content: b}}]\n")
