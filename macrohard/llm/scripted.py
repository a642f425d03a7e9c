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
        - say: Done.                        # no calls: the role is finished

A call may give `tool: NAME` and `raw: '<text>'` instead, to send malformed output on purpose.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from macrohard.errors import ScriptError
from macrohard.llm.base import Message, ModelRequest, ModelResponse, ToolCall
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


class ScriptStep(BaseModel):
    say: str | None = None
    calls: list[ScriptCall] = Field(default_factory=list)
    expect: list[str] = Field(default_factory=list)

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
        raise ScriptError(f"script {path} is malformed: {e}", "see macrohard/llm/scripted.py for the format") from e
    return script


def _estimate_tokens(text: str) -> int:
    # About four characters a token: enough for budgets and context checks offline.
    return max(1, len(text) // 4)


class ScriptedModel:
    """Replays a script per (role, task); parallel tickets each keep their own place."""

    def __init__(self, script: Script, *, name: str = "scripted", latency_s: float = 0.0) -> None:
        self.script = script
        self.name = name
        self.latency_s = latency_s
        self._cursor: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ScriptedModel:
        return cls(load_script(path), **kwargs)

    def _next_step(self, role: str, task: str) -> tuple[int, ScriptStep]:
        steps = self.script.get(role, {}).get(task)
        if steps is None:
            raise ScriptError(f"the script has no steps for {role}/{task}", f"add a `{role}: {task}:` section")
        with self._lock:
            n = self._cursor.get((role, task), 0)
            if n >= len(steps):
                raise ScriptError(
                    f"the script for {role}/{task} ran out after {len(steps)} steps (step {n + 1} was asked for)",
                    "add steps, or check why the role needed more turns",
                )
            self._cursor[(role, task)] = n + 1
        return n, steps[n]

    def complete(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        n, step = self._next_step(request.role, request.task)
        where = f"{request.role}/{request.task} step {n + 1}"
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
        message = Message(
            role="assistant",
            content=step.say,
            tool_calls=[
                ToolCall(id=f"call_{request.task}_{n + 1}_{i}", name=c.tool, arguments=c.arguments)
                for i, c in enumerate(step.calls)
            ],
        )
        if self.latency_s:
            time.sleep(self.latency_s)
        sent = "".join((m.content or "") + "".join(c.arguments for c in m.tool_calls) for m in request.messages)
        answer = (step.say or "") + "".join(c.arguments for c in step.calls)
        usage = Usage(prompt_tokens=_estimate_tokens(sent), completion_tokens=_estimate_tokens(answer), estimated=True)
        return ModelResponse(message=message, usage=usage, model=self.name, latency_s=time.perf_counter() - started)


def _since_last_answer(messages: list[Message]) -> str:
    tail: list[str] = []
    for m in reversed(messages):
        if m.role == "assistant":
            break
        tail.append(m.content or "")
    return "\n".join(reversed(tail))
