import threading
import time

import pytest

from macrohard.config import ModelPrice
from macrohard.control import RunControl, RunPaused, Spent
from macrohard.llm.base import Message, ModelResponse
from macrohard.models import Budget, Usage


def response(tokens: int, model: str = "m") -> ModelResponse:
    return ModelResponse(message=Message(role="assistant", content="x"), usage=Usage(prompt_tokens=tokens),
                         model=model, latency_s=0.0)


def call(control: RunControl, tokens: int, hold_s: float = 0.0) -> None:
    with control.model_call():
        time.sleep(hold_s)
        control.record(response(tokens))


def test_stops_at_the_token_budget_and_says_what_was_spent():
    control = RunControl(Budget(max_tokens=250), {})
    for _ in range(3):
        call(control, 100)
    with pytest.raises(RunPaused, match="token budget reached: 300 of 250"):
        call(control, 100)
    assert control.spent.calls == 3


def test_parallel_callers_overshoot_by_at_most_one_call():
    control = RunControl(Budget(max_tokens=1000), {})
    call(control, 100)  # the largest call seen so far sets how far one more may go
    stopped = []

    def worker() -> None:
        try:
            while True:
                call(control, 100, hold_s=0.02)
        except RunPaused:
            stopped.append(True)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(stopped) == 8
    assert 1000 <= control.spent.tokens <= 1100


def test_cost_and_wall_budgets():
    control = RunControl(Budget(max_cost_usd=0.001), {"m": ModelPrice(input=10.0, output=0.0)})
    call(control, 100)  # $0.001
    with pytest.raises(RunPaused, match="cost budget reached"):
        call(control, 1)
    resumed = RunControl(Budget(max_wall_s=5), {}, Spent(), active_before_s=5.0)
    with pytest.raises(RunPaused, match="time budget reached"):
        call(resumed, 1)


def test_a_pause_request_stops_the_next_call_and_wakes_waiters():
    control = RunControl(Budget(), {})
    call(control, 10)
    control.request_pause("paused by the user (Ctrl-C)")
    with pytest.raises(RunPaused, match="Ctrl-C"):
        call(control, 10)


def test_parallel_callers_overshoot_a_cost_budget_by_at_most_one_call():
    control = RunControl(Budget(max_cost_usd=0.01), {"m": ModelPrice(input=10.0, output=0.0)})
    call(control, 100)  # $0.001 a call

    def worker() -> None:
        try:
            while True:
                call(control, 100, hold_s=0.02)
        except RunPaused:
            pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert 0.01 <= control.spent.cost_usd <= 0.011 + 1e-9
