"""The pool whose background work waits while urgent work runs."""

import threading
import time

from macrohard.company import background
from macrohard.company.background import BackgroundPool


def test_background_work_waits_for_the_last_urgent_block_in_order():
    pool = BackgroundPool(2, "test")
    done: list[str] = []
    with pool.urgent():
        with pool.urgent():
            first = pool.submit(done.append, "a", background=True)
            pool.submit(done.append, "b", background=True)
            now = pool.submit(done.append, "now")  # not background: at once
            now.result(5)
        time.sleep(0.1)
        assert done == ["now"]  # one block is still open
    first.result(5)
    time.sleep(0.1)
    assert done == ["now", "a", "b"]
    pool.shutdown()


def test_wanted_work_goes_at_once_and_an_error_reaches_its_future():
    pool = BackgroundPool(2, "test")

    def fails() -> None:
        raise ValueError("no")

    with pool.urgent():
        held = pool.submit(fails, background=True, key="k")
        other = pool.submit(lambda: "other", background=True, key="j")
        pool.want("k")
        try:
            held.result(5)
        except ValueError as e:
            assert str(e) == "no"
        else:
            raise AssertionError("the error was lost")
        assert not other.done()
    assert other.result(5) == "other"
    pool.shutdown()


def test_held_work_goes_after_the_longest_hold_however_long_the_urgent_block(monkeypatch):
    monkeypatch.setattr(background, "MAX_HOLD_S", 0.2)
    pool = BackgroundPool(2, "test")
    ran = threading.Event()
    with pool.urgent():
        pool.submit(ran.set, background=True)
        assert ran.wait(5)
    pool.shutdown()
