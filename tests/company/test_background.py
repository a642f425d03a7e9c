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


def test_held_work_waits_until_every_stretch_goes_and_a_new_step_drops_the_last_ones():
    pool = BackgroundPool(2, "test")
    done: list[str] = []
    pool.hold(["T-1", "T-2"])
    first = pool.submit(done.append, "stop", background=True)
    pool.go("T-1")
    pool.go("T-1")  # twice: a no-op
    time.sleep(0.1)
    assert done == []  # T-2 is not at its call yet
    pool.go("T-2")
    first.result(5)
    assert done == ["stop"]
    pool.hold(["T-3"])
    second = pool.submit(done.append, "start", background=True)
    pool.hold(["T-4"], only=True)  # a new step: T-3's stretch is over, whatever became of it
    pool.go("T-4")
    second.result(5)
    assert done == ["stop", "start"]
    pool.shutdown()


def test_a_stretch_counts_as_urgent_beside_an_urgent_block_and_can_be_waited_for():
    pool = BackgroundPool(2, "test")
    done: list[str] = []
    pool.hold(["T-1"])
    with pool.urgent():
        held = pool.submit(done.append, "a", background=True)
        gone = threading.Event()
        waiter = threading.Thread(target=lambda: (pool.wait_gone(5), gone.set()))
        waiter.start()
        time.sleep(0.1)
        assert not gone.is_set()
        pool.go("T-1")
        assert gone.wait(5)
        time.sleep(0.1)
        assert done == []  # the urgent block is still open
    held.result(5)
    started = time.monotonic()
    pool.hold(["T-9"])
    pool.wait_gone(0.2)  # never goes: the wait ends at its timeout
    assert 0.15 < time.monotonic() - started < 2
    late = pool.submit(done.append, "b", background=True)
    pool.release()  # the run ends: stretches are dropped, held work goes
    late.result(5)
    assert done == ["a", "b"]
    pool.shutdown()
