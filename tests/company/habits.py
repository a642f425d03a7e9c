"""A competent model with the habits of real endpoints, served over real HTTP.

It knows what to do from a model script (the demo's), and answers each chat-completions
request the way real models and servers do:

- it announces its plan in text before it acts, at the start of every session;
- it writes some tool calls into its text instead of `tool_calls` (bare JSON, a fenced
  block, `<tool_call>` tags), in turn;
- a long write_file is first cut at the output limit (`finish_reason: "length"`, the
  arguments broken off), then sent whole;
- it reads the PRD twice and lists the files three times before its first real step of an attempt;
- every other answer has no `usage`, some carry `reasoning_content`;
- several calls of one step go out as parallel tool calls;
- its window is small: a request over it gets HTTP 400 `context_length_exceeded` (or,
  for the tester, 429 "Request too large"), as vLLM and OpenAI answer.

It is stateless, like the scripted model: the role comes from the system prompt, the
task and attempt from the task prompt, and the step from how many answers the
conversation already holds.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from chat_server import Received, Reply, chunk, error

from macrohard.llm.scripted import Script, ScriptCall, ScriptStep, _sessions
from macrohard.roles import Role

ANNOUNCEMENT = "I'll start by looking at what is there, then make the change step by step."
FORMS = ("bare", "fenced", "tags")


@dataclass
class Answer:
    content: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    reasoning: str | None = None
    form: str = ""  # how a call written as text is written


@dataclass
class HabitModel:
    """The responder for tests/chat_server.py's ChatServer."""

    script: Script
    roles: dict[str, Role]
    window_tokens: int
    tester_window_tokens: int = 0  # the tester's requests meet a smaller window (0: the same)
    served: list[str] = field(default_factory=list)  # what each answer was, for the test to check
    refused: list[int] = field(default_factory=list)  # the status of each request refused as too large
    sizes: list[int] = field(default_factory=list)  # each request's size in tokens, as the server counts

    def __call__(self, received: Received) -> Reply:
        body = received.body
        messages = body["messages"]
        role = self._role(messages[0]["content"])
        size = sum(len(json.dumps(m)) for m in messages) // 4
        self.sizes.append(size)
        window = self.tester_window_tokens if role == "tester" and self.tester_window_tokens else self.window_tokens
        if size > window:
            status = 429 if role == "tester" else 400
            self.refused.append(status)
            if status == 429:
                return error(429, f"Request too large for model: Limit {window}, Requested {size}.")
            return Reply(400, {"error": {"message": f"This model's maximum context length is {window} "
                                                    f"tokens. However, your messages resulted in {size} tokens.",
                                         "type": "invalid_request_error", "code": "context_length_exceeded"}})
        task, attempt = _task(role, messages[1]["content"])
        answers = self._answers(role, task, attempt)
        n = sum(1 for m in messages if m["role"] == "assistant")
        if n >= len(answers):
            return error(418, f"the habit model has no answer {n + 1} for {role}/{task} attempt {attempt}")
        answer = answers[n]
        self.served.append(f"{role}/{task}/{attempt}/{n + 1}:{_kind(answer)}")
        usage = None if len(self.served) % 2 == 0 else {"prompt_tokens": size, "completion_tokens": 20}
        if body.get("stream"):
            return Reply(chunks=_chunks(answer, usage))
        return Reply(body=_completion(answer, usage))

    def _role(self, system: str) -> str:
        return next(name for name, role in self.roles.items() if role.prompt == system)

    def _answers(self, role: str, task: str, attempt: int) -> list[Answer]:
        first, steps = _sessions(self.script[role][task])[attempt - 1]
        out = [Answer(content=ANNOUNCEMENT)]
        if role in ("engineer", "tester"):
            # Reads the PRD twice over, then lists the files three times: the third time is
            # answered with a nudge that it goes in circles.
            looks = [{"read_file": {"path": "docs/PRD.md", "start": 1}},
                     {"read_file": {"path": "docs/PRD.md", "start": 1, "end": 500}}] + [{"list_files": {}}] * 3
            out += [Answer(calls=[_call(ScriptCall.model_validate(look), f"look{i}")]) for i, look in enumerate(looks)]
        for i, step in enumerate(steps):
            out += _with_habits(step, first + i, f"{role}/{task}")
        return out


def _with_habits(step: ScriptStep, number: int, where: str) -> list[Answer]:
    calls = [c for c in step.calls]
    if not calls:
        # The script's "say" that ends a session: a real model calls finish.
        calls = [ScriptCall.model_validate({"finish": {"summary": step.say or "done"}})]
    answers = []
    for call in calls:
        if call.tool == "write_file" and len(json.loads(call.arguments).get("content", "")) > 200:
            # Cut at the output limit mid-argument, then (told so) sent whole.
            answers.append(Answer(calls=[{"id": f"cut{number}", "name": call.tool,
                                          "arguments": call.arguments[: len(call.arguments) // 2]}],
                                  finish_reason="length"))
            break
    reasoning = "Thinking about the next step." if number % 3 == 0 else None
    pick = zlib.crc32(f"{where}/{number}".encode())
    if len(calls) == 1 and calls[0].tool != "finish":
        form = FORMS[pick % len(FORMS)]
        answers.append(Answer(content=_as_text(calls[0], form), reasoning=reasoning, form=form))
    else:
        answers.append(Answer(content=step.say, calls=[_call(c, f"{number}_{i}") for i, c in enumerate(calls)],
                              finish_reason="tool_calls", reasoning=reasoning))
    return answers


def _call(call: ScriptCall, suffix: str) -> dict[str, Any]:
    return {"id": f"call_{suffix}", "name": call.tool, "arguments": call.arguments}


def _as_text(call: ScriptCall, form: str) -> str:
    data = json.dumps({"name": call.tool, "arguments": json.loads(call.arguments)})
    if form == "bare":
        return data
    if form == "fenced":
        return f"I will do this now:\n```json\n{data}\n```"
    return f"<tool_call>\n{data}\n</tool_call>"


def _kind(answer: Answer) -> str:
    if answer.finish_reason == "length":
        return "cut"
    if answer.calls:
        return "calls"
    if answer.content == ANNOUNCEMENT:
        return "announce"
    return f"text-call-{answer.form}"


def _task(role: str, prompt: str) -> tuple[str, int]:
    if role == "product_manager":
        return "plan", 1
    if role == "deployer":
        return "release", 1
    ticket = re.match(r"Ticket (T-\d+):", prompt)
    assert ticket, prompt[:200]
    attempt = re.search(r"This is attempt (\d+)\.|\(attempt (\d+)\)", prompt)
    return ticket.group(1), int(next(g for g in attempt.groups() if g)) if attempt else 1


def _message(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in answer.calls]
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    return message


def _completion(answer: Answer, usage: dict[str, int] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-habits", "object": "chat.completion", "created": 1_700_000_000,
                            "model": "habits", "choices": [{"index": 0, "message": _message(answer),
                                                            "finish_reason": answer.finish_reason}]}
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


def _chunks(answer: Answer, usage: dict[str, int] | None) -> list[dict[str, Any]]:
    out = [chunk({"role": "assistant", "content": ""})]
    if answer.reasoning:
        out.append(chunk({"reasoning_content": answer.reasoning}))
    if answer.content:
        text = answer.content
        out += [chunk({"content": text[i : i + 40]}) for i in range(0, len(text), 40)]
    for index, call in enumerate(answer.calls):
        args = call["arguments"]
        out.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                          "function": {"name": call["name"], "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 64]}}]})
                for i in range(0, len(args), 64)]
    out.append(chunk({}, finish_reason=answer.finish_reason))
    if usage is not None:
        out.append(chunk(usage={**usage, "total_tokens": sum(usage.values())}))
    return out
