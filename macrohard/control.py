"""What may stop a run: a budget reached, or the user asking it to pause.

Every model call asks first, and its CallWatch (`RunControl.watch()`) asks again while
the answer streams, so a pause or a spent budget also cuts a call short. Stopping raises
RunPaused out of the node, so LangGraph keeps the last checkpoint and the node runs
again from its start on resume.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from pydantic import BaseModel

from macrohard.config import ModelPrice
from macrohard.llm.base import ModelResponse
from macrohard.models import Budget, Usage

# The rough rate at which a streamed answer's characters are counted as tokens.
CHARS_PER_TOKEN = 4


class RunPaused(Exception):
    """The run stops cleanly and can be resumed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Spent(BaseModel):
    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    # Of `tokens`, those estimated (an endpoint that sent no usage, a call cut short).
    estimated_tokens: int = 0


class RunControl:
    def __init__(
        self,
        budget: Budget,
        prices: Mapping[str, ModelPrice],
        spent: Spent | None = None,
        active_before_s: float = 0.0,
    ) -> None:
        self.budget = budget
        self.prices = prices
        self.spent = spent or Spent()
        self.active_before_s = active_before_s
        self._started = time.monotonic()
        self._pause: str | None = None
        self._in_flight = 0
        # The largest call so far, in tokens and dollars: how far one more call may go.
        self._largest_tokens = 0
        self._largest_cost = 0.0
        self._cond = threading.Condition()

    @property
    def active_s(self) -> float:
        return self.active_before_s + time.monotonic() - self._started

    def request_pause(self, reason: str) -> None:
        with self._cond:
            self._pause = reason
            self._cond.notify_all()

    def wall_left_s(self) -> float | None:
        """Seconds left of the wall-time budget (None: no such budget)."""
        if self.budget.max_wall_s is None:
            return None
        return self.budget.max_wall_s - self.active_s

    def cut_reason(self, streaming_tokens: int = 0) -> str | None:
        """Why a call in flight should stop now: a pause asked, or a budget spent.

        `streaming_tokens` is what the asking call has received so far and not yet
        recorded: an answer that runs past the token budget is cut as it streams.
        """
        with self._cond:
            return self._pause or self._over(streaming_tokens)

    def watch(self, on_stream: Callable[[int], None] | None = None) -> ControlWatch:
        """A CallWatch for one model call; `on_stream` is told the answer's length as it grows."""
        return ControlWatch(self, on_stream)

    def _over(self, streaming_tokens: int = 0) -> str | None:
        b, s = self.budget, self.spent
        tokens = s.tokens + streaming_tokens
        if b.max_tokens is not None and tokens >= b.max_tokens:
            return f"token budget reached: {tokens} of {b.max_tokens} tokens spent"
        if b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd:
            return f"cost budget reached: ${s.cost_usd:.4f} of ${b.max_cost_usd:.4f} spent"
        if b.max_wall_s is not None and self.active_s >= b.max_wall_s:
            return f"time budget reached: {self.active_s:.0f}s of {b.max_wall_s:.0f}s"
        return None

    def _crowded(self) -> bool:
        # Parallel tickets must not all pass the check at once and overshoot together:
        # while calls are in flight, another starts only if even the largest call seen
        # so far from each of them would still leave room.
        if self._in_flight == 0:
            return False
        n, b, s = self._in_flight + 1, self.budget, self.spent
        over_tokens = b.max_tokens is not None and s.tokens + n * self._largest_tokens > b.max_tokens
        over_cost = b.max_cost_usd is not None and s.cost_usd + n * self._largest_cost > b.max_cost_usd
        return over_tokens or over_cost

    @contextmanager
    def model_call(self) -> Iterator[None]:
        """Wrap one model call and its record(): refuse it when paused or over budget."""
        with self._cond:
            while self._pause is None and self._crowded():
                self._cond.wait()
            reason = self._pause or self._over()
            if reason is not None:
                raise RunPaused(reason)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def record(self, response: ModelResponse) -> None:
        self.record_usage(response.model, response.usage)

    def record_usage(self, model: str, usage: Usage) -> None:
        """Count one call's tokens and cost, estimated or not (a cut call's estimate too)."""
        tokens = usage.total_tokens
        price = self.prices.get(model)
        cost = price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if price else 0.0
        with self._cond:
            self.spent.tokens += tokens
            self.spent.estimated_tokens += tokens if usage.estimated else 0
            self.spent.cost_usd += cost
            self.spent.calls += 1
            self._largest_tokens = max(self._largest_tokens, tokens)
            self._largest_cost = max(self._largest_cost, cost)
            self._cond.notify_all()


class ControlWatch:
    """The CallWatch of one model call under a RunControl (see llm.base.CallWatch)."""

    def __init__(self, control: RunControl, on_stream: Callable[[int], None] | None = None) -> None:
        self.control = control
        self.on_stream = on_stream
        self.chars = 0  # the answer so far

    def streamed(self, chars: int) -> None:
        self.chars = chars
        if self.on_stream is not None:
            self.on_stream(chars)

    def cut(self) -> str | None:
        return self.control.cut_reason(-(-self.chars // CHARS_PER_TOKEN))

    def timeout_s(self) -> float | None:
        return self.control.wall_left_s()
