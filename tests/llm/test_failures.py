"""Reading refusals: the waits servers ask for, and the pauses between retries."""

from __future__ import annotations

import email.utils
import time

import pytest

from macrohard.llm.failures import backoff_s, read_refusal, retry_after


def test_retry_after_in_milliseconds_seconds_or_as_a_date() -> None:
    assert retry_after({"Retry-After-Ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after({"retry-after": when}) or 0) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_backoff_doubles_to_a_cap_less_jitter() -> None:
    assert [backoff_s(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_s(0, 0.999) == pytest.approx(0.375, abs=0.001)


def test_a_refusal_reads_each_servers_error_shape() -> None:
    openai = read_refusal(400, {"message": "bad", "type": "invalid_request_error", "code": "x"}, {}, "")
    vllm = read_refusal(400, {"object": "error", "message": "bad too", "code": 400}, {}, "")
    fastapi = read_refusal(422, {"detail": "field required"}, {}, "")
    text = read_refusal(502, "<html>Bad Gateway</html>", {}, "")
    assert [r.detail for r in (openai, vllm, fastapi, text)] == ["bad", "bad too", "field required", "<html>Bad Gateway</html>"]
    assert text.transient and not openai.transient and not fastapi.transient
    long = read_refusal(400, {"message": "x" * 500}, {}, "")
    assert len(long.detail) == 200 and long.detail.endswith("...")
