import pytest
import yaml

from macrohard.errors import ScriptError
from macrohard.llm.base import Message, ModelRequest, ToolSpec
from macrohard.llm.scripted import ScriptedModel, load_script

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
"""

TOOLS = [ToolSpec(name="write_file", description="", parameters={})]


def ask(model, text="go", role="engineer", task="T-1", tools=TOOLS):
    return model.complete(ModelRequest(messages=[Message(role="user", content=text)], tools=tools, role=role, task=task))


def model(tmp_path, text=SCRIPT):
    path = tmp_path / "script.yaml"
    path.write_text(text)
    return ScriptedModel.from_file(path)


def test_replays_steps_in_order_with_estimated_usage(tmp_path):
    m = model(tmp_path)
    first = ask(m)
    assert first.message.content == "writing"
    assert first.message.tool_calls[0].name == "write_file"
    assert yaml.safe_load(first.message.tool_calls[0].arguments) == {"path": "a.py", "content": "x = 1\n"}
    assert first.usage.estimated and first.usage.prompt_tokens >= 1
    second = ask(m, "wrote a.py (6 bytes)")
    assert second.message.tool_calls[0].arguments == '{"path": "a.py", '
    assert ask(m).message.content == "done"


def test_running_out_names_the_step(tmp_path):
    m = model(tmp_path)
    ask(m), ask(m, "wrote a.py"), ask(m)
    with pytest.raises(ScriptError, match=r"engineer/T-1 ran out after 3 steps \(step 4"):
        ask(m)


def test_unmet_expectation_names_the_step(tmp_path):
    m = model(tmp_path)
    ask(m)
    with pytest.raises(ScriptError, match=r"engineer/T-1 step 2 expects 'wrote a.py'"):
        ask(m, "something else")


def test_a_tool_the_role_lacks_fails_loudly(tmp_path):
    with pytest.raises(ScriptError, match="calls tool 'write_file', which engineer does not have"):
        ask(model(tmp_path), tools=[])


def test_unknown_task_and_bad_yaml(tmp_path):
    with pytest.raises(ScriptError, match="no steps for tester/T-1"):
        ask(model(tmp_path), role="tester")
    with pytest.raises(ScriptError, match="not valid YAML"):
        model(tmp_path, "engineer: [unclosed")


def test_tickets_keep_their_own_place(tmp_path):
    m = model(tmp_path, "engineer:\n  T-1: [{say: one}]\n  T-2: [{say: two}]\n")
    assert ask(m, task="T-2").message.content == "two"
    assert ask(m, task="T-1").message.content == "one"
