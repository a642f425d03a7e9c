"""One role working one task: ask the model, run the tools it calls, until it calls finish.

A session ends finished only through the `finish` tool. Everything else that ends it (the
step limit, replies without a call after every nudge, a streak of failing calls, going
round in circles, a conversation that cannot be made to fit the model's window) ends it
unfinished, with a typed outcome and a one-line reason for the next attempt
(agent/outcome.py). Each request is kept inside the model's context window by masking old
observations (agent/context.py); tool calls an endpoint sent as text are recovered
(agent/recovery.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from macrohard.agent.context import Compaction, ContextWindow, estimate_message
from macrohard.agent.dispatch import MAX_TOOL_RESULT_CHARS, clip_result, dispatch, replayable
from macrohard.agent.outcome import AgentResult, Outcome, one_line
from macrohard.agent.recovery import recover_calls
from macrohard.agent.stuck import StuckWatch
from macrohard.agent.tools import Finish, Tool, finish_tool, spec_of
from macrohard.config import ModelSettings
from macrohard.control import RunControl, RunPaused
from macrohard.errors import CallCut, ContextOverflowError
from macrohard.llm.base import CallWatch, ChatModel, Message, ModelRequest, ModelResponse, ToolCall
from macrohard.models import Usage
from macrohard.roles import Role
from macrohard.transcript.log import INLINE_ARGUMENTS_CHARS, TranscriptLog

__all__ = ["MAX_TOOL_RESULT_CHARS", "AgentLoop", "AgentResult", "Outcome"]

# A role whose replies fail this many times in a row ends its attempt.
MAX_CONSECUTIVE_ERRORS = 3
# Replies in a row without a tool call that are answered with a nudge; the next one ends the attempt.
MAX_NUDGES = 3
# Requests the model refused as too large, per step, each answered by masking deeper.
MAX_OVERFLOW_RETRIES = 3
# A streamed answer's progress is told to listeners (the live view) at most this often.
STREAM_NOTICE_S = 0.5
_DEFAULTS = ModelSettings()

NUDGE_NO_CALL = (
    "You replied without calling a tool, and only tool calls do anything here. Continue the task with a tool call; "
    "when it is done, call finish with a short summary."
)
NUDGE_CUT = (
    "Your answer was cut at the output limit before it was complete. Continue with a tool call and keep each answer "
    "shorter; write a large file in parts (write_file, then write_file with append=true for each further part)."
)
CUT_CALL = (
    "error: your answer was cut at the output limit while it was writing this call, so the call was not run. "
    "Write large files in parts: write_file with the first part, then write_file with append=true for each "
    "further part, each well below the limit."
)
NUDGE_STUCK = (
    "You are going round in circles: {finding}. Do something different, or call finish with a summary of what "
    "is done and what stops you."
)


@dataclass
class _Session:
    """What one run of the loop keeps: the conversation, its window, its counters."""

    messages: list[Message]
    context: ContextWindow
    stuck: StuckWatch = field(default_factory=StuckWatch)
    usage: Usage = field(default_factory=Usage)
    recorded: int = 0  # messages already in the transcript
    last_answer: str | None = None
    nudges: int = 0  # replies in a row without a call
    errors_in_a_row: int = 0
    last_error: str = ""
    stuck_nudged: bool = False


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
        context_window: int = _DEFAULTS.context_window,
        max_tokens: int | None = _DEFAULTS.max_tokens,
        watch_factory: Callable[[], CallWatch] | None = None,
    ) -> None:
        self.attempt = attempt
        self.control = control
        self.role = role
        # The transcript's redactor: what it keeps out of the log, the loop keeps out of files.
        self.redactor = transcript.redactor
        self.model = model
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        # Every role can finish: it is how a session ends, whatever the role file lists.
        self.tools.setdefault(Finish.name, finish_tool(list(self.tools)))
        self.transcript = transcript
        self.task = task
        self.ticket = ticket
        self.context_window = context_window
        self.max_tokens = max_tokens
        # A watch per model call (a pause or budget can cut a streamed answer, and its
        # progress is shown live); the run control makes them, else none is passed.
        self.watch_factory = watch_factory
        self.specs = [spec_of(t) for t in self.tools.values()]

    def _log(self, kind: str, **data: object) -> str:
        return self.transcript.append(kind, role=self.role.name, ticket=self.ticket, task=self.task, **data).id

    def run(self, prompt: str) -> AgentResult:
        s = _Session(
            messages=[Message(role="system", content=self.role.prompt), Message(role="user", content=prompt)],
            context=ContextWindow(self.context_window, self.max_tokens),
        )
        for step in range(1, self.role.max_steps + 1):
            response = self._ask(s, step)
            if isinstance(response, AgentResult):
                return response
            ended = self._act(s, step, response)
            if ended is not None:
                return ended
        return self._end(s, Outcome.STEP_LIMIT, f"step limit of {self.role.max_steps} reached", self.role.max_steps)

    def _end(self, s: _Session, outcome: Outcome, reason: str, steps: int, summary: str = "") -> AgentResult:
        return AgentResult(
            role=self.role.name, task=self.task, finished=outcome is Outcome.FINISHED, reason=one_line(reason),
            summary=summary, steps=steps, usage=s.usage, last_event_id=s.last_answer, outcome=outcome,
        )

    # -- asking ------------------------------------------------------------

    def _ask(self, s: _Session, step: int) -> ModelResponse | AgentResult:
        """One answer for this step, the conversation masked to fit; a result if it cannot fit."""
        self._compacted(step, s, s.context.prepare(s.messages, self.specs))
        estimate = s.context.estimate(s.messages, self.specs)
        if estimate > s.context.limit:
            return self._overflow(s, step, estimate)
        self._log(
            "model.request", step=step, messages=[m.model_dump(exclude_defaults=True) for m in s.messages[s.recorded:]],
            n_messages=len(s.messages), tools=[t.name for t in self.specs], estimated_tokens=estimate,
        )
        s.recorded = len(s.messages)
        for retry in range(MAX_OVERFLOW_RETRIES + 1):
            request = ModelRequest(
                messages=s.context.view(s.messages), tools=self.specs, role=self.role.name, task=self.task,
                attempt=self.attempt,
            )
            try:
                return self._complete(request, estimate, step)
            except ContextOverflowError as e:
                # What was sent stays in the transcript: this request, then how it was masked.
                self._log("model.overflow", step=step, estimated_tokens=estimate, error=one_line(str(e)))
                masked = s.context.after_overflow(s.messages, self.specs, estimate)
                smaller = s.context.estimate(s.messages, self.specs)
                if masked is None or smaller >= estimate or retry == MAX_OVERFLOW_RETRIES:
                    return self._overflow(s, step, estimate)
                self._compacted(step, s, masked)
                estimate = smaller
        raise AssertionError("unreachable: the last retry returns")

    def _overflow(self, s: _Session, step: int, estimate: int) -> AgentResult:
        return self._end(
            s, Outcome.OVERFLOW,
            f"the conversation (about {estimate} tokens) does not fit the model's context window "
            f"({self.context_window} tokens, {s.context.limit} of them for the prompt) even with old results masked",
            step,
        )

    def _compacted(self, step: int, s: _Session, compaction: Compaction | None) -> None:
        if compaction is not None:
            self._log("context.compacted", step=step, window=s.context.window, **compaction.model_dump())

    def _complete(self, request: ModelRequest, estimate: int, step: int) -> ModelResponse:
        watch = self._watch(step)
        if self.control is None:
            return _with_usage(self._call_model(request, watch), estimate)
        with self.control.model_call():
            try:
                response = _with_usage(self._call_model(request, watch), estimate)
            except CallCut as e:
                # A pause or a budget cut the answer short: what it cost still counts, and
                # the run stops resumable (this step asks again on resume).
                usage = Usage(prompt_tokens=e.prompt_tokens, completion_tokens=e.completion_tokens, estimated=True)
                model = str(getattr(self.model, "model", None) or getattr(self.model, "name", ""))
                self.control.record_usage(model, usage)
                self._log("model.cut", step=step, model=model, reason=e.reason, usage=usage.model_dump())
                raise RunPaused(e.reason) from None
            # Inside the call: a ticket waiting for room must see this spend.
            self.control.record(response)
            return response

    def _watch(self, step: int) -> CallWatch | None:
        if self.watch_factory is not None:
            return self.watch_factory()
        if self.control is None:
            return None
        last = [0.0]

        def streaming(chars: int) -> None:
            # Not in the transcript (the answer is, once complete): only the live view hears it.
            now = time.monotonic()
            if now - last[0] >= STREAM_NOTICE_S:
                last[0] = now
                self.transcript.notify("model.streaming", role=self.role.name, ticket=self.ticket, task=self.task,
                                       step=step, chars=chars)

        return self.control.watch(on_stream=streaming)

    def _call_model(self, request: ModelRequest, watch: CallWatch | None) -> ModelResponse:
        # A model written before watches existed takes only the request.
        return self.model.complete(request) if watch is None else self.model.complete(request, watch)

    # -- acting ------------------------------------------------------------

    def _act(self, s: _Session, step: int, response: ModelResponse) -> AgentResult | None:
        """Run what the answer asks for; the session's result if it ended."""
        if self.redactor:
            # Before any tool acts on it: a key the model echoes never reaches a file.
            response.message = Message.model_validate(self.redactor.value(response.message.model_dump()))
            # Arguments are JSON: redacted on their decoded values, so escapes hide nothing.
            for call in response.message.tool_calls:
                call.arguments = self.redactor.arguments(call.arguments)
        answer, kept_text = response.message, response.message.content
        if not answer.tool_calls:
            recovered, kept_text = recover_calls(answer.content, self.tools, f"call_{step}_text")
            answer = answer.model_copy(update={"tool_calls": recovered})
        sent = Message(role="assistant", content=kept_text, tool_calls=[replayable(c) for c in answer.tool_calls])
        s.usage = s.usage + response.usage
        extra: dict[str, object] = {}
        if sent != answer:
            extra["replayed_as"] = sent.model_dump(exclude_defaults=True)  # what later requests carry instead
        s.last_answer = self._log(
            "model.response", step=step, model=response.model, served_model=response.served_model,
            message=answer.model_dump(exclude_defaults=True), finish_reason=response.finish_reason,
            recovered=sum(c.recovered for c in answer.tool_calls), usage=response.usage.model_dump(),
            latency_s=round(response.latency_s, 4), **extra,
        )
        s.messages.append(sent)
        s.recorded += 1
        cut = response.finish_reason == "length"
        if not answer.tool_calls:
            s.nudges += 1
            if s.nudges > MAX_NUDGES:
                return self._end(
                    s, Outcome.NO_ACTION,
                    f"{s.nudges} replies in a row without a tool call, after {MAX_NUDGES} reminders to call one or finish",
                    step,
                )
            self._nudge(s, step, "cut" if cut else "no_call", NUDGE_CUT if cut else NUDGE_NO_CALL)
            return None
        s.nudges = 0
        return self._run_calls(s, step, answer.tool_calls, cut)

    def _run_calls(self, s: _Session, step: int, calls: list[ToolCall], cut: bool) -> AgentResult | None:
        results: dict[int, tuple[bool, str]] = {}
        finishing = [i for i, c in enumerate(calls) if c.name == Finish.name]
        for i, call in enumerate(calls):
            if cut and i == len(calls) - 1 and not call.recovered:
                results[i] = self._call(call, step, s.last_answer, refused=CUT_CALL)
            elif i not in finishing:
                results[i] = self._call(call, step, s.last_answer)
        summary: str | None = None
        for i in finishing:  # after the others: finishing is the answer's last act
            if i in results:
                continue
            if summary is not None or any(not ok for ok, _ in results.values()):
                why = "finish was already called" if summary is not None else (
                    "another call of this answer failed; fix it (or say why not), then call finish again"
                )
                results[i] = self._call(calls[i], step, s.last_answer, refused=f"error: not finished: {why}")
                continue
            results[i] = self._call(calls[i], step, s.last_answer)
            if results[i][0]:
                summary = str(json.loads(calls[i].arguments).get("summary", ""))
        for i, call in enumerate(calls):
            s.messages.append(Message(role="tool", tool_call_id=call.id, content=results[i][1]))
        if summary is not None:
            return self._end(s, Outcome.FINISHED, "done", step, summary=summary)
        failed = [r for ok, r in results.values() if not ok]
        if failed:
            s.last_error = failed[-1]
        s.errors_in_a_row = s.errors_in_a_row + 1 if len(failed) == len(calls) else 0
        if s.errors_in_a_row >= MAX_CONSECUTIVE_ERRORS:
            return self._end(
                s, Outcome.ERRORS, f"{s.errors_in_a_row} replies in a row failed; last error: {s.last_error}", step
            )
        findings = [s.stuck.saw(call, *results[i]) for i, call in enumerate(calls)]
        finding = next((f for f in findings if f), None)
        if finding is not None:
            if s.stuck_nudged:
                return self._end(s, Outcome.STUCK, f"stuck: {finding}", step)
            s.stuck_nudged = True
            self._nudge(s, step, "stuck", NUDGE_STUCK.format(finding=finding))
        return None

    def _nudge(self, s: _Session, step: int, why: str, text: str) -> None:
        s.messages.append(Message(role="user", content=text))
        self._log("agent.nudged", step=step, why=why, nudges_in_a_row=s.nudges)

    def _call(self, call: ToolCall, step: int, answer_id: str | None, refused: str | None = None) -> tuple[bool, str]:
        ok, result = (False, refused) if refused is not None else dispatch(self.tools, call)
        result = clip_result(self.redactor.text(result))
        if len(call.arguments) <= INLINE_ARGUMENTS_CHARS or answer_id is None:
            stored: dict[str, object] = {"arguments": call.arguments}
        else:
            digest = hashlib.sha256(call.arguments.encode()).hexdigest()
            stored = {"arguments_ref": {"event": answer_id, "chars": len(call.arguments), "sha256": digest}}
        if call.recovered:
            stored["recovered"] = True
        self._log("tool.call", step=step, call_id=call.id, tool=call.name, ok=ok, result=result, **stored)
        return ok, result


def _with_usage(response: ModelResponse, estimate: int) -> ModelResponse:
    """An answer without usage is counted by estimate (marked so): budgets must see it."""
    u = response.usage
    if u.prompt_tokens or u.completion_tokens or u.estimated:
        return response
    answer = estimate_message(response.message)
    return response.model_copy(update={"usage": Usage(prompt_tokens=estimate, completion_tokens=answer, estimated=True)})
