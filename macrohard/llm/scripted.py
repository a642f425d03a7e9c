"""A model that replays a written script: how tests, benchmarks and the demo run offline.

The script is YAML: role -> task -> a list of steps. Tasks are ticket ids for the
engineer and tester, `plan` for the product manager and `release` for the deployer.

    engineer:
      T-1:
        - say: Writing the module.          # optional assistant text
          calls:
            - write_file: {path: app.py, content: "print('hi')\n"}
        - expect: "exit code 1"             # must appear in what the model was just sent
          calls:
            - edit_file: {path: app.py, old: hi, new: hello}
        - say: Done.                        # no calls: finish, with `say` as the summary

A role's session on a task ends at a step that finishes: one without calls (sent as a
`finish` call with `say` as its summary, when the role is offered `finish`), one that
calls `finish` itself, or one marked `end: true` (it ends the script's session even
though it calls other tools: the loop ends it some other way, a limit or an error
streak). The next steps are its next session: the ticket's next attempt, or a new plan
after feedback. The model keeps no position of its own: it finds the step from the
session (the request's attempt) and the number of answers already in the conversation,
so a run resumed after a crash replays exactly what the interrupted step would have.

A step marked `announce: true` is a reply in text only that does not end the session
(an announcement before acting, or a tool call written as text in `say`): the loop
answers it with a nudge, or recovers the call. A step marked `cut: true` says the answer
was cut at the output limit (finish_reason "length"). A call may give `tool: NAME` and
`raw: '<text>'` instead, to send malformed output on purpose; a `finish` call given so
does not end the script's session (to script a finish the loop refuses).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from macrohard.errors import ScriptError
from macrohard.llm.base import CallWatch, Message, ModelRequest, ModelResponse, ToolCall
from macrohard.models import Usage


class ScriptCall(BaseModel):
    tool: str
    arguments: str  # JSON text, possibly malformed on purpose
    # A `raw` call is malformed on purpose, so it may also name a tool the role lacks.
    deliberate: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, dict) and "tool" not in value and len(value) == 1:
            (tool, args), = value.items()
            return {"tool": tool, "arguments": json.dumps(args or {})}
        if isinstance(value, dict) and "raw" in value:
            return {"tool": value.get("tool"), "arguments": value["raw"], "deliberate": True}
        return value


FINISH = "finish"


class ScriptStep(BaseModel):
    say: str | None = None
    calls: list[ScriptCall] = Field(default_factory=list)
    expect: list[str] = Field(default_factory=list)
    end: bool = False  # ends the session even though it calls tools
    announce: bool = False  # a reply without calls that does not end the session
    cut: bool = False  # the answer was cut at the output limit

    @property
    def ends_session(self) -> bool:
        finishes = any(c.tool == FINISH and not c.deliberate for c in self.calls)
        return self.end or finishes or (not self.calls and not self.announce)

    @model_validator(mode="after")
    def _announce_has_no_calls(self) -> ScriptStep:
        if self.announce and self.calls:
            raise ValueError("a step with `announce: true` is a reply without calls; remove its calls or the flag")
        return self

    @model_validator(mode="before")
    @classmethod
    def _expect_list(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("expect"), str):
            return {**value, "expect": [value["expect"]]}
        return value


Script = dict[str, dict[str, list[ScriptStep]]]


def load_script(path: Path) -> Script:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ScriptError(f"cannot read script {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ScriptError(f"script {path} is not valid YAML: {e}") from e
    try:
        script: Script = {
            role: {str(task): [ScriptStep.model_validate(s) for s in steps] for task, steps in tasks.items()}
            for role, tasks in (raw or {}).items()
        }
    except (ValidationError, AttributeError, TypeError) as e:
        raise ScriptError(f"script {path} is malformed: {e}", "see docs/script-format.md for the format") from e
    return script


def _estimate_tokens(text: str) -> int:
    # About four characters a token: enough for budgets and context checks offline.
    return max(1, len(text) // 4)


class ScriptedModel:
    """Replays a script per role, task and session; stateless, so parallel and resumed runs agree."""

    def __init__(self, script: Script, *, name: str = "scripted", latency_s: float = 0.0) -> None:
        self.script = script
        self.name = name
        self.latency_s = latency_s

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ScriptedModel:
        return cls(load_script(path), **kwargs)

    def _step(self, request: ModelRequest) -> tuple[str, ScriptStep]:
        role, task = request.role, request.task
        steps = self.script.get(role, {}).get(task)
        if steps is None:
            raise ScriptError(f"the script has no steps for {role}/{task}", f"add a `{role}: {task}:` section")
        sessions = _sessions(steps)
        if request.attempt > len(sessions):
            raise ScriptError(
                f"the script for {role}/{task} has {len(sessions)} session(s), and session {request.attempt} was asked for",
                "add steps, or check why the role was asked again",
            )
        first, session = sessions[request.attempt - 1]
        n = sum(1 for m in request.messages if m.role == "assistant")
        if n >= len(session):
            raise ScriptError(
                f"the script for {role}/{task} ran out after {first + len(session)} steps (step {first + n + 1} was asked for)",
                "add steps, or check why the role needed more turns",
            )
        return f"{role}/{task} step {first + n + 1}", session[n]

    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse:
        started = time.perf_counter()
        where, step = self._step(request)
        fresh = _since_last_answer(request.messages)
        for needle in step.expect:
            if needle not in fresh:
                raise ScriptError(
                    f"script step {where} expects {needle!r} in what the model was sent, but it is not there",
                    f"the model was sent: {fresh[-300:]!r}",
                )
        offered = {t.name for t in request.tools}
        for call in step.calls:
            if call.tool not in offered and not call.deliberate:
                raise ScriptError(
                    f"script step {where} calls tool {call.tool!r}, which {request.role} does not have",
                    f"its tools are: {', '.join(sorted(offered)) or 'none'}",
                )
        number = where.rsplit(" ", 1)[1]
        calls, content = step.calls, step.say
        if not calls and not step.announce and FINISH in offered:
            # Scripts written before `finish` end a session with a reply without calls.
            calls, content = [ScriptCall(tool=FINISH, arguments=json.dumps({"summary": step.say or ""}))], None
        message = Message(
            role="assistant",
            content=content,
            tool_calls=[
                ToolCall(id=f"call_{request.task}_{number}_{i}", name=c.tool, arguments=c.arguments)
                for i, c in enumerate(calls)
            ],
        )
        if self.latency_s:
            time.sleep(self.latency_s)
        sent = "".join((m.content or "") + "".join(c.arguments for c in m.tool_calls) for m in request.messages)
        answer = (content or "") + "".join(c.arguments for c in calls)
        usage = Usage(prompt_tokens=_estimate_tokens(sent), completion_tokens=_estimate_tokens(answer), estimated=True)
        reason = "length" if step.cut else "tool_calls" if calls else "stop"
        return ModelResponse(
            message=message, usage=usage, model=self.name, latency_s=time.perf_counter() - started, finish_reason=reason
        )


def _sessions(steps: list[ScriptStep]) -> list[tuple[int, list[ScriptStep]]]:
    """Split a task's steps into sessions, each with the index of its first step."""
    out: list[tuple[int, list[ScriptStep]]] = []
    start = 0
    for i, step in enumerate(steps):
        if step.ends_session:
            out.append((start, steps[start : i + 1]))
            start = i + 1
    if start < len(steps):
        out.append((start, steps[start:]))
    return out


def _since_last_answer(messages: list[Message]) -> str:
    tail: list[str] = []
    for m in reversed(messages):
        if m.role == "assistant":
            break
        tail.append(m.content or "")
    return "\n".join(reversed(tail))
