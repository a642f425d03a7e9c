"""The audit's cost of a run prices cached input tokens at the cached price."""

from __future__ import annotations

import pytest

from macrohard.config import ModelPrice
from macrohard.models import Usage
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import Event


def response_event(usage: Usage) -> Event:
    return Event(seq=1, id="e1", ts=0.0, run_id="r", kind="model.response", role="engineer",
                 data={"model": "m", "usage": usage.model_dump()}, prev_hash="0" * 64)


def test_cached_input_tokens_are_priced_lower() -> None:
    usage = Usage(prompt_tokens=100_000, completion_tokens=1_000, cached_tokens=90_000)
    cached = build_report([response_event(usage)], {"m": ModelPrice(input=2.0, output=8.0, cached_input=0.5)})
    assert cached.totals.cost_usd == pytest.approx(0.073)
    # Without a cached price, cached tokens cost what any input costs.
    plain = build_report([response_event(usage)], {"m": ModelPrice(input=2.0, output=8.0)})
    assert plain.totals.cost_usd == pytest.approx(0.208)
