"""One role working one task: ask the model, run the tools it calls, until it is done."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

from macrohard.agent.tools import Tool, ToolError, spec_of
from macrohard.control import RunControl
from macrohard.llm.base import ChatModel, Message, ModelRequest, ToolCall
from macrohard.models import Usage
from macrohard.roles import Role
from macrohard.transcript.log import INLINE_ARGUMENTS_CHARS, TranscriptLog

MAX_TOOL_RESULT_CHARS = 12_000
# A role whose replies fail this many times in a row ends its attempt.
MAX_CONSECUTIVE_ERRORS = 3


class AgentResult(BaseModel):
    role: str
    task: str
    finished: bool  # the model said it was done (rather than hitting a limit)
    reason: str
    summary: str
    steps: int
    usage: Usage
    last_event_id: str | None  # the last model answer: commits name it as their cause


class AgentLoop:
    def __init__(
        self,
        role: Role,
        model: ChatModel,
        tools: Sequence[Tool],
        transcript: TranscriptLog,
        *,
        task: str,
        ticket: str | None = None,
        attempt: int = 1,
        control: RunControl | None = None,
    ) -> None:
        self.attempt = attempt
        self.control = control
        self.role = role
        # The transcript's redactor: what it keeps out of the log, the loop keeps out of files.
        self.redactor = transcript.redactor
        self.model = model
        self.tools = {t.name: t for t in tools}
        self.transcript = transcript
        self.task = task
        self.ticket = ticket

    def _log(self, kind: str, **data: object) -> str:
        return self.transcript.append(kind, role=self.role.name, ticket=self.ticket, **data).id

    def run(self, prompt: str) -> AgentResult:
        messages = [Message(role="system", content=self.role.prompt), Message(role="user", content=prompt)]
        specs = [spec_of(t) for t in self.tools.values()]
        usage = Usage()
        sent = 0  # messages already recorded in the transcript
        last_answer: str | None = None
        errors_in_a_row = 0
        last_error = ""
        for step in range(1, self.role.max_steps + 1):
            self._log(
                "model.request",
                task=self.task,
                step=step,
                messages=[m.model_dump(exclude_defaults=True) for m in messages[sent:]],
                n_messages=len(messages),
                tools=[s.name for s in specs],
            )
            sent = len(messages)
            request = ModelRequest(
                messages=messages, tools=specs, role=self.role.name, task=self.task, attempt=self.attempt
            )
            if self.control is None:
                response = self.model.complete(request)
            else:
                with self.control.model_call():
                    response = self.model.complete(request)
                    # Inside the call: a ticket waiting for room must see this spend.
                    self.control.record(response)
            if self.redactor:
                # Before any tool acts on it: a key the model echoes never reaches a file.
                response.message = Message.model_validate(self.redactor.value(response.message.model_dump()))
                # Arguments are JSON: redacted on their decoded values, so escapes hide nothing.
                for call in response.message.tool_calls:
                    call.arguments = self.redactor.arguments(call.arguments)
            usage = usage + response.usage
            last_answer = self._log(
                "model.response",
                task=self.task,
                step=step,
                model=response.model,
                served_model=response.served_model,
                message=response.message.model_dump(exclude_defaults=True),
                usage=response.usage.model_dump(),
                latency_s=round(response.latency_s, 4),
            )
            answer = response.message
            messages.append(answer)
            sent += 1
            if not answer.tool_calls:
                return AgentResult(
                    role=self.role.name, task=self.task, finished=True, reason="done",
                    summary=answer.content or "", steps=step, usage=usage, last_event_id=last_answer,
                )
            failures = 0
            for call in answer.tool_calls:
                ok, result = self._call(call, step, last_answer)
                result = self.redactor.text(result)
                if not ok:
                    failures += 1
                    last_error = result
                messages.append(Message(role="tool", tool_call_id=call.id, content=result))
            errors_in_a_row = errors_in_a_row + 1 if failures == len(answer.tool_calls) else 0
            if errors_in_a_row >= MAX_CONSECUTIVE_ERRORS:
                return AgentResult(
                    role=self.role.name, task=self.task, finished=False,
                    reason=f"{errors_in_a_row} replies in a row failed; last error: {last_error}",
                    summary="", steps=step, usage=usage, last_event_id=last_answer,
                )
        return AgentResult(
            role=self.role.name, task=self.task, finished=False,
            reason=f"step limit of {self.role.max_steps} reached", summary="",
            steps=self.role.max_steps, usage=usage, last_event_id=last_answer,
        )

    def _call(self, call: ToolCall, step: int, answer_id: str | None = None) -> tuple[bool, str]:
        ok, result = self._dispatch(call)
        if len(result) > MAX_TOOL_RESULT_CHARS:
            half = MAX_TOOL_RESULT_CHARS // 2
            result = f"{result[:half]}\n... [{len(result) - 2 * half} characters omitted] ...\n{result[-half:]}"
        if len(call.arguments) <= INLINE_ARGUMENTS_CHARS or answer_id is None:
            stored: dict[str, object] = {"arguments": call.arguments}
        else:
            digest = hashlib.sha256(call.arguments.encode()).hexdigest()
            stored = {"arguments_ref": {"event": answer_id, "chars": len(call.arguments), "sha256": digest}}
        self._log("tool.call", task=self.task, step=step, call_id=call.id, tool=call.name, ok=ok, result=result, **stored)
        return ok, result

    def _dispatch(self, call: ToolCall) -> tuple[bool, str]:
        tool = self.tools.get(call.name)
        if tool is None:
            return False, f"error: there is no tool {call.name!r}; available: {', '.join(self.tools)}"
        try:
            raw = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as e:
            return False, f"error: the arguments are not valid JSON ({e.msg} at position {e.pos}); send a JSON object"
        if not isinstance(raw, dict):
            return False, "error: the arguments must be a JSON object"
        try:
            args = tool.Args.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'arguments'}: {x['msg']}" for x in e.errors())
            return False, f"error: bad arguments for {call.name}: {problems}"
        try:
            return True, tool.run(args)
        except ToolError as e:
            return False, f"error: {e}"
        except (OSError, UnicodeDecodeError) as e:
            return False, f"error: {call.name} failed: {e}"
