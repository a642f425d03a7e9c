"""A model that serves a recorded run's answers: `macrohard replay`, offline and deterministic.

Each request is answered with the model.response recorded at the same place in the
recorded run (role, task, attempt, step: see llm/recording.py), so a run can be
re-scored, debugged or re-run after a change to the orchestrator without a model
endpoint. Where the orchestrator now asks something the recording never answered, the
replay stops with a ReplayError naming the call.

A fork (`--from EVENT`) replays only the answers recorded before that event; every
other request goes to a live model, which carries the run on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from macrohard.errors import ConfigError, ScriptError
from macrohard.llm.base import CallWatch, ChatModel, Message, ModelRequest, ModelResponse
from macrohard.llm.recording import CallKey, RecordedAnswer, read_answers
from macrohard.transcript.log import ChainHead, read_events


class ReplayError(ScriptError):
    """The recording has no answer for what the orchestrator asked."""


def served(answer: RecordedAnswer, started: float) -> ModelResponse:
    """The recorded answer as the model sent it: calls the agent loop had recovered from its text are
    left for the loop to recover again."""
    calls = [c for c in answer.message.tool_calls if not c.recovered]
    message = Message(role="assistant", content=answer.message.content, tool_calls=calls,
                      reasoning=answer.message.reasoning)
    return ModelResponse(
        message=message, usage=answer.usage, model=answer.model, served_model=answer.served_model,
        finish_reason=answer.finish_reason, latency_s=time.perf_counter() - started,
    )


class ReplayModel:
    """Answers from a recording; past `until_seq` (a fork) or where it has none, from `live`, if given."""

    def __init__(
        self,
        answers: dict[CallKey, RecordedAnswer],
        *,
        source: str,
        until_seq: int | None = None,
        live: ChatModel | None = None,
    ) -> None:
        self.answers = answers
        self.source = source
        self.until_seq = until_seq
        self.live = live
        self.name = "replay"

    def complete(self, request: ModelRequest, watch: CallWatch | None = None) -> ModelResponse:
        started = time.perf_counter()
        step = 1 + sum(1 for m in request.messages if m.role == "assistant")
        key = CallKey(request.role, request.task, request.attempt, step)
        answer = self.answers.get(key)
        if answer is not None and (self.until_seq is None or answer.seq < self.until_seq):
            return served(answer, started)
        if self.live is not None:
            return self.live.complete(request) if watch is None else self.live.complete(request, watch)
        raise ReplayError(
            f"the recording of run {self.source} has no answer for {key.describe()}",
            "the orchestrator asked what the recorded run never did; fork with --from EVENT to let a live model go on",
        )


class ReplaySource(BaseModel):
    """What a replay run replays; kept in its run.json, so a resumed replay serves the same answers."""

    run_id: str
    transcript: Path
    # The recording's last event when the replay began: events appended later are not used.
    head: ChainHead | None = None
    from_event: str | None = None  # a fork: answers recorded before this event are replayed, a live model gives the rest
    from_seq: int | None = None
    answers: int = 0  # recorded answers available to the replay
    verified: bool = True  # whether the recording's hash chain held when the replay began
    live_model: str | None = None  # the live model of a fork, as described

    @classmethod
    def of(cls, run_id: str, transcript: Path, *, from_event: str | None = None, verified: bool = True) -> ReplaySource:
        if not transcript.is_file():
            raise ConfigError(f"run {run_id} has no transcript to replay", "give a run folder made by `macrohard run`")
        events = list(read_events(transcript))
        head = ChainHead(seq=events[-1].seq, hash=events[-1].hash) if events else None
        from_seq = None
        if from_event is not None:
            found = next((e for e in events if e.id == from_event), None)
            if found is None:
                raise ConfigError(f"run {run_id} has no event {from_event}",
                                  f"`macrohard audit {run_id} --kind model.response` lists its model answers")
            from_seq = found.seq
        source = cls(run_id=run_id, transcript=transcript.resolve(), head=head, from_event=from_event,
                     from_seq=from_seq, verified=verified)
        source.answers = sum(1 for a in source.load().values() if from_seq is None or a.seq < from_seq)
        if source.answers == 0 and from_event is None:
            raise ConfigError(f"run {run_id} recorded no model answer", "there is nothing to replay")
        return source

    @property
    def forks(self) -> bool:
        return self.from_event is not None

    def load(self) -> dict[CallKey, RecordedAnswer]:
        if not self.transcript.is_file():
            raise ConfigError(f"the recording {self.transcript} of run {self.run_id} is gone",
                              "restore the recorded run's folder to replay (or resume) it")
        return read_answers(self.transcript, self.head.seq if self.head else None)

    def models(self, live: Callable[[str], ChatModel] | None) -> Callable[[str], ChatModel]:
        """A replay model per role, over one reading of the recording; `live` gives a fork's live models."""
        if self.forks and live is None:
            raise ConfigError("a fork needs a live model to go on with", "pass --script FILE or configure [model]")
        answers = self.load()
        cache: dict[str, ReplayModel] = {}

        def model_for(role: str) -> ChatModel:
            if role not in cache:
                cache[role] = ReplayModel(answers, source=self.run_id, until_seq=self.from_seq,
                                          live=live(role) if live is not None and self.forks else None)
            return cache[role]

        return model_for

    def describe(self) -> str:
        what = f"replay of {self.run_id}"
        return f"{what} up to {self.from_event}, then {self.live_model or 'a live model'}" if self.forks else what
