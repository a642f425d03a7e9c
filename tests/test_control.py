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


def test_estimated_usage_counts_toward_the_budget():
    control = RunControl(Budget(max_tokens=1000), {})
    with control.model_call():
        control.record(ModelResponse(message=Message(role="assistant", content="x"), model="m", latency_s=0.0,
                                     usage=Usage(prompt_tokens=900, completion_tokens=200, estimated=True)))
    assert (control.spent.tokens, control.spent.estimated_tokens) == (1100, 1100)
    with pytest.raises(RunPaused, match="token budget reached"):
        call(control, 1)


def test_cached_input_is_priced_as_cached():
    price = ModelPrice(input=2.0, output=8.0, cached_input=0.5)
    control = RunControl(Budget(), {"m": price})
    with control.model_call():
        control.record(ModelResponse(message=Message(role="assistant", content="x"), model="m", latency_s=0.0,
                                     usage=Usage(prompt_tokens=100_000, completion_tokens=1_000, cached_tokens=90_000)))
    # 10k fresh at $2, 90k cached at $0.50, 1k out at $8, per million: not $0.208 as if none were cached.
    assert control.spent.cost_usd == pytest.approx(0.073)


def test_a_cut_call_can_be_counted():
    control = RunControl(Budget(max_tokens=100), {})
    control.record_usage("m", Usage(prompt_tokens=80, completion_tokens=30, estimated=True))
    assert (control.spent.tokens, control.spent.calls) == (110, 1)
    with pytest.raises(RunPaused):
        call(control, 1)


def test_the_watch_cuts_on_a_pause_and_tells_the_time_left():
    control = RunControl(Budget(max_wall_s=100), {})
    watch = control.watch()
    assert watch.cut() is None
    assert 99 < watch.timeout_s() <= 100
    control.request_pause("paused by the user (Ctrl-C)")
    assert watch.cut() == "paused by the user (Ctrl-C)"
    assert RunControl(Budget(), {}).watch().timeout_s() is None


def test_the_watch_cuts_when_the_time_budget_is_spent():
    control = RunControl(Budget(max_wall_s=5), {}, Spent(), active_before_s=5.0)
    watch = control.watch()
    assert watch.timeout_s() <= 0
    assert watch.cut() is not None and "time budget reached" in watch.cut()


def test_the_watch_cuts_an_answer_that_streams_past_the_token_budget():
    control = RunControl(Budget(max_tokens=1000), {})
    call(control, 900)
    told: list[int] = []
    watch = control.watch(on_stream=told.append)
    watch.streamed(200)  # about 50 tokens
    assert watch.cut() is None
    watch.streamed(400)  # about 100 tokens: 900 + 100 reaches 1000
    assert watch.cut() is not None and "token budget reached: 1000 of 1000" in watch.cut()
    assert told == [200, 400]


def test_the_watch_cuts_when_another_call_spent_the_budget():
    control = RunControl(Budget(max_tokens=1000), {})
    watch = control.watch()
    assert watch.cut() is None
    call(control, 1000)  # a parallel ticket's call ends meanwhile
    assert watch.cut() is not None
