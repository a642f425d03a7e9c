import json

import pytest
import yaml

from macrohard.agent.recovery import recover_calls
from macrohard.llm.base import ChatModel, ModelRequest, ModelResponse
from macrohard.transcript.log import call_arguments

KNOWN = {"read_file", "write_file", "finish"}
READ = {"path": "a.py"}


@pytest.mark.parametrize("text", [
    '{"name": "read_file", "arguments": {"path": "a.py"}}',
    '  {"name": "read_file", "arguments": "{\\"path\\": \\"a.py\\"}"}\n',
    '{"name": "read_file", "parameters": {"path": "a.py"}}',
    '{"type": "function", "function": {"name": "read_file", "arguments": {"path": "a.py"}}}',
    '{"function": "read_file", "parameters": {"path": "a.py"}}',
    '[{"name": "read_file", "arguments": {"path": "a.py"}}]',
    'I will read the file first.\n```json\n{"name": "read_file", "arguments": {"path": "a.py"}}\n```',
    '```\n{"name": "read_file", "arguments": {"path": "a.py"}}\n```',
    '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>',
    'Reading it now. {"name": "read_file", "arguments": {"path": "a.py"}}',
])
def test_each_form_is_recovered_as_one_call(text):
    calls, rest = recover_calls(text, KNOWN, "c1")
    assert [(c.name, json.loads(c.arguments), c.recovered, c.id) for c in calls] == [("read_file", READ, True, "c1_0")]
    assert rest is None or "read_file" not in rest


def test_several_tagged_calls_keep_their_order_and_the_prose_stays():
    text = (
        "Two steps.\n<tool_call>{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"x\"}}</tool_call>\n"
        "<tool_call>{\"name\": \"finish\", \"arguments\": {\"summary\": \"done\"}}</tool_call>"
    )
    calls, rest = recover_calls(text, KNOWN, "c")
    assert [c.name for c in calls] == ["write_file", "finish"] and [c.id for c in calls] == ["c_0", "c_1"]
    assert rest == "Two steps."


@pytest.mark.parametrize("text", [
    '{"name": "delete_everything", "arguments": {}}',  # not a tool the role has
    '{"name": "read_file", "description": "Read a file", "parameters": {}}',  # a schema, not a call
    'The config is {"name": "read_file", "version": 2}.',
    '```json\n{"name": "read_file", "arguments": {"path": "a.py"}}\n{"title": "x"}\n```',  # an example block
    '<tool_call>{"name": "write_file", "arguments": {"path": "a.py", "content": "cut he',  # cut off: not a call
    "I am done with the ticket.",
    "",
])
def test_text_that_is_not_a_call_to_a_known_tool_stays_text(text):
    calls, rest = recover_calls(text, KNOWN, "c")
    assert calls == [] and rest == text


def test_a_long_answer_full_of_braces_is_searched_in_bounded_time():
    import time

    text = '{"a": [' * 5000 + "x"
    started = time.perf_counter()
    assert recover_calls(text, KNOWN, "c")[0] == []
    assert time.perf_counter() - started < 2


class WritesCallsAsText:
    """An endpoint like Ollama serving Qwen2.5-Coder: every tool call comes back as JSON in content."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request.model_copy(deep=True))
        response = self.inner.complete(request)
        message = response.message
        text = "\n".join(
            "<tool_call>" + json.dumps({"name": c.name, "arguments": json.loads(c.arguments)}) + "</tool_call>"
            for c in message.tool_calls
        )
        flat = message.model_copy(update={"content": f"Working on it.\n{text}", "tool_calls": []})
        return response.model_copy(update={"message": flat, "finish_reason": "stop"})


def test_a_session_whose_calls_all_come_as_text_gets_its_work_done(run_agent):
    big = "x = 1\n" * 500  # stored once, by reference from the tool call: blame must still read it
    models: list[WritesCallsAsText] = []

    def wrap(model: ChatModel) -> ChatModel:
        models.append(WritesCallsAsText(model))
        return models[0]

    script = {"engineer": {"T-1": [
        {"calls": [{"write_file": {"path": "a.py", "content": big}}]},
        {"expect": "wrote a.py", "say": "Done: a.py."},
    ]}}
    s = run_agent(yaml.safe_dump(script), wrap=wrap)
    assert s.result.finished and s.result.summary == "Done: a.py." and (s.root / "a.py").read_text() == big
    calls = s.of("tool.call")
    assert [(c.data["tool"], c.data.get("recovered")) for c in calls] == [("write_file", True), ("finish", True)]
    first = s.of("model.response")[0].data
    assert first["recovered"] == 1 and first["message"]["tool_calls"][0]["recovered"] is True
    assert first["message"]["content"].startswith("Working on it.\n<tool_call>")  # the answer as given
    by_id = {e.id: e for e in s.events}
    assert json.loads(call_arguments(calls[0], by_id.get))["content"] == big
    # later requests carry the call as a call (with the prose only), so tool results have their call
    sent = models[0].requests[1].messages[2]
    assert sent.content == "Working on it." and [c.name for c in sent.tool_calls] == ["write_file"]
    assert models[0].requests[1].messages[3].tool_call_id == sent.tool_calls[0].id


def test_nothing_is_recovered_when_real_tool_calls_came(run_agent):
    script = {"engineer": {"T-1": [
        {"say": '{"name": "write_file", "arguments": {"path": "b.py", "content": "no"}}',
         "calls": [{"write_file": {"path": "a.py", "content": "yes"}}]},
        {"say": "done"},
    ]}}
    s = run_agent(yaml.safe_dump(script))
    assert (s.root / "a.py").exists() and not (s.root / "b.py").exists()
    assert s.of("model.response")[0].data["recovered"] == 0
