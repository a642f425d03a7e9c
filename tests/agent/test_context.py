import json
from pathlib import Path

from macrohard.agent.context import HIGH_WATER, KEEP_RECENT, LOW_WATER, ContextWindow, estimate
from macrohard.agent.loop import Outcome
from macrohard.errors import ContextOverflowError
from macrohard.llm.base import ChatModel, Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from macrohard.transcript.log import call_arguments

TOOLS = [ToolSpec(name="read_file", description="Read a file.", parameters={"type": "object"})]


def conversation(steps: int, result_chars: int = 4000) -> list[Message]:
    messages = [Message(role="system", content="You code."), Message(role="user", content="Do T-1.")]
    for n in range(steps):
        call = ToolCall(id=f"c{n}", name="read_file", arguments=json.dumps({"path": f"f{n}.py"}))
        messages.append(Message(role="assistant", content=f"step {n}", tool_calls=[call]))
        messages.append(Message(role="tool", tool_call_id=f"c{n}", content=f"{n}" * result_chars))
    return messages


def test_nothing_is_masked_below_the_high_water_mark():
    messages = conversation(3)
    window = ContextWindow(window=100_000, max_tokens=1000)
    assert window.prepare(messages, TOOLS) is None and window.view(messages) == messages


def test_old_results_are_masked_down_to_the_low_water_mark_keeping_prompt_and_recent_steps():
    messages = conversation(24, result_chars=2000)  # 24 results of 500 tokens
    window = ContextWindow(window=12_000, max_tokens=2000)
    before = estimate(messages, TOOLS)
    assert before > HIGH_WATER * window.limit
    compaction = window.prepare(messages, TOOLS)
    assert compaction is not None and compaction.before == before
    view = window.view(messages)
    assert compaction.after == estimate(view, TOOLS) <= LOW_WATER * window.limit
    assert view[:2] == messages[:2]  # the system prompt and the task
    recent = [i for i, m in enumerate(messages) if m.role == "assistant"][-KEEP_RECENT]
    assert view[recent:] == messages[recent:]
    stubbed = [m for m in view if m.role == "tool" and m.content.startswith("[masked")]
    assert len(stubbed) == len(compaction.masked) > 0
    assert 'read_file(path="f0.py")' in stubbed[0].content and "call it again" in stubbed[0].content
    assert [m.index for m in compaction.masked] == sorted(m.index for m in compaction.masked)  # oldest first


def test_between_maskings_the_prefix_stays_byte_stable():
    messages = conversation(12)
    window = ContextWindow(window=12_000, max_tokens=2000)
    assert window.prepare(messages, TOOLS) is not None
    sent = window.view(messages)
    messages += conversation(1, result_chars=100)[2:]  # a small step: still under the high-water mark
    assert window.prepare(messages, TOOLS) is None
    assert window.view(messages)[: len(sent)] == sent


def test_file_contents_in_old_calls_are_masked_under_a_key_of_their_own():
    messages = [Message(role="system", content="s"), Message(role="user", content="t")]
    for n in range(6):
        args = {"path": f"m{n}.py", "content": "x = 1\n" * 400}
        messages.append(Message(role="assistant", tool_calls=[ToolCall(id=f"w{n}", name="write_file", arguments=json.dumps(args))]))
        messages.append(Message(role="tool", tool_call_id=f"w{n}", content=f"wrote m{n}.py"))
    window = ContextWindow(window=4096, max_tokens=1024)
    compaction = window.prepare(messages, TOOLS)
    assert compaction is not None and {m.kind for m in compaction.masked} == {"call_arguments"}
    old = json.loads(window.view(messages)[2].tool_calls[0].arguments)
    # a model copying its old call gets "content: Field required", not a file holding the note
    assert old == {"path": "m0.py", "content_masked": "2400 characters, not repeated to save room"}
    assert window.view(messages)[2].tool_calls[0].id == "w0"


def test_an_overflow_shrinks_the_room_and_masks_deeper():
    messages = conversation(KEEP_RECENT)  # nothing but recent steps
    window = ContextWindow(window=100_000, max_tokens=1000)
    sent = estimate(messages, TOOLS)
    compaction = window.after_overflow(messages, TOOLS, sent)
    assert compaction is not None and window.limit < sent and compaction.after <= window.limit
    assert compaction.kept_recent < KEEP_RECENT  # the recent steps alone did not fit: masked too
    assert window.view(messages)[-1] == messages[-1]  # the latest result stays while it can


class DenseTokenizer:
    """An endpoint whose window is smaller than the loop's estimate says: it answers 400 when over."""

    def __init__(self, inner: ChatModel, max_chars: int) -> None:
        self.inner = inner
        self.max_chars = max_chars
        self.requests: list[ModelRequest] = []
        self.refused = 0

    def complete(self, request: ModelRequest) -> ModelResponse:
        chars = sum(len(m.content or "") + sum(len(c.arguments) for c in m.tool_calls) for m in request.messages)
        if chars > self.max_chars:
            self.refused += 1
            raise ContextOverflowError(f"This model's maximum context length is exceeded ({chars} characters)")
        self.requests.append(request.model_copy(deep=True))
        return self.inner.complete(request)


def reading_session(root: Path, steps: int, reads: int = 3) -> dict:
    root.mkdir(exist_ok=True)
    (root / "big.py").write_text("".join(f"def f{i}():\n    return {i}  # {'y' * 40}\n" for i in range(3000)))
    script = [
        {"calls": [{"read_file": {"path": "big.py", "start": 1 + 100 * (reads * n + k)}} for k in range(reads)]}
        for n in range(steps)
    ]
    return {"engineer": {"T-1": [*script, {"say": "done"}]}}


def test_a_long_session_stays_inside_a_small_window_and_masks_rarely(run_agent, tmp_path):
    models: list[DenseTokenizer] = []

    def wrap(model: ChatModel) -> ChatModel:
        models.append(DenseTokenizer(model, max_chars=10**9))
        return models[0]

    s = run_agent(reading_session(tmp_path / "wt", 20, reads=2), max_steps=25, wrap=wrap)  # the default window
    assert s.result.finished and s.result.steps == 21
    limit = 32_768 - 8192
    assert all(e.data["estimated_tokens"] <= limit for e in s.of("model.request"))
    assert all(estimate(r.messages, r.tools) <= limit for r in models[0].requests)
    compactions = s.of("context.compacted")
    assert 0 < len(compactions) <= 20 // 2  # a step is a fifth of the room: a masking every other step
    assert all(c.data["after"] < c.data["before"] and c.data["masked"] for c in compactions)
    # between two maskings each request only appends to the one before: prompt caches keep hitting
    steps_masked = {c.data["step"] for c in compactions}
    requests = models[0].requests
    for step in range(2, len(requests) + 1):
        if step not in steps_masked:
            before, now = requests[step - 2].messages, requests[step - 1].messages
            assert now[: len(before)] == before, f"step {step} changed the prefix without a masking"


def test_a_request_the_model_refuses_as_too_large_is_masked_harder_and_sent_again(run_agent, tmp_path):
    models: list[DenseTokenizer] = []

    def wrap(model: ChatModel) -> ChatModel:
        # The loop thinks it has 32k tokens; the server takes about 40,000 characters.
        models.append(DenseTokenizer(model, max_chars=40_000))
        return models[0]

    s = run_agent(reading_session(tmp_path / "wt", 8), max_steps=12, wrap=wrap)
    assert s.result.finished, s.result.reason
    assert models[0].refused >= 1 and len(s.of("model.overflow")) == models[0].refused
    reasons = [c.data["reason"] for c in s.of("context.compacted")]
    assert "the model said the request did not fit its context window" in reasons
    # every answer the model gave was to a request it accepted; the transcript has one request per step
    assert len(s.of("model.request")) == len(s.of("model.response")) == 9


def test_a_conversation_that_cannot_fit_ends_unfinished_as_overflow(run_agent, tmp_path):
    def wrap(model: ChatModel) -> ChatModel:
        return DenseTokenizer(model, max_chars=10)  # not even the prompts fit

    s = run_agent("engineer:\n  T-1:\n    - say: done\n", wrap=wrap)
    assert not s.result.finished and s.result.outcome is Outcome.OVERFLOW
    assert "does not fit the model's context window" in s.result.reason
    huge = run_agent("engineer:\n  T-1:\n    - say: done\n", prompt="x" * 200_000, context_window=4096, max_tokens=512)
    assert huge.result.outcome is Outcome.OVERFLOW and huge.of("model.request") == []


def test_masked_writes_still_lead_blame_to_the_full_answer(run_agent):
    content = "".join(f"LINE_{i} = {i}\n" for i in range(300))
    script = {"engineer": {"T-1": [
        {"calls": [{"write_file": {"path": "m.py", "content": content}}]},
        *[{"calls": [{"read_file": {"path": "m.py", "start": 1 + n}}, {"read_file": {"path": "m.py", "start": 2 + n}}]}
          for n in range(0, 12, 2)],
        {"say": "done"},
    ]}}
    s = run_agent(script, context_window=4096, max_tokens=1024)
    assert s.result.finished
    masked = [m for c in s.of("context.compacted") for m in c.data["masked"]]
    assert {"index": 2, "kind": "call_arguments", "tool": "write_file"}.items() <= next(m for m in masked if m["index"] == 2).items()
    by_id = {e.id: e for e in s.events}
    write = s.of("tool.call")[0]
    assert json.loads(call_arguments(write, by_id.get))["content"] == content
