"""A run's sandboxes: retiring a ticket's (stop, then clean up) in the background, on the local fakes."""

import threading
import time
from pathlib import Path

from macrohard.company.sandboxes import RunSandboxes
from macrohard.errors import SandboxError
from macrohard.transcript.log import TranscriptLog, read_events

from fakes import LocalSandbox, LocalSandboxProvider


class SlowToStop(LocalSandbox):
    """Stops only when the test lets it: what runs after the stop can be seen waiting for it."""

    may_stop = threading.Event()

    def stop(self) -> None:
        assert self.may_stop.wait(10)
        super().stop()


class SlowProvider(LocalSandboxProvider):
    def start(self, workdir, *, labels, read_only=False, output_dir=None, extras=None):
        box = SlowToStop(workdir, labels, read_only, output_dir, extras)
        self.started.append(box)
        return box


def sandboxes(tmp_path: Path, provider: LocalSandboxProvider) -> tuple[RunSandboxes, TranscriptLog]:
    transcript = TranscriptLog(tmp_path / "transcript.jsonl", "run")
    return RunSandboxes(provider, transcript, "run"), transcript


def test_a_retired_sandbox_is_stopped_before_its_cleanup_runs_and_neither_holds_up_the_caller(tmp_path):
    provider = SlowProvider()
    boxes, transcript = sandboxes(tmp_path, provider)
    boxes.exec("T-1", tmp_path, "true")
    (box,) = provider.started
    seen: list[bool] = []
    boxes.retire("T-1", lambda: seen.append(box.stopped))
    assert seen == []  # returned while the sandbox is still stopping
    SlowToStop.may_stop.set()
    boxes.close()  # waits for the retirement
    assert seen == [True]  # the cleanup ran once no process of the sandbox was left
    assert [e.data["sandbox"] for e in read_events(transcript.path) if e.kind == "sandbox.stop"] == ["T-1"]


def test_a_parked_sandbox_is_retired_too_and_a_failed_cleanup_is_recorded_not_raised(tmp_path):
    provider = LocalSandboxProvider()
    boxes, transcript = sandboxes(tmp_path, provider)
    boxes.exec("T-2", tmp_path, "true")
    boxes.release("T-2", later=True)  # parked, as a ticket's sandbox is once its tester finished

    def cleanup() -> None:
        raise OSError("worktree busy")

    boxes.retire("T-2", cleanup)
    boxes.close()
    assert provider.started[0].stopped
    (failed,) = [e for e in read_events(transcript.path) if e.kind == "sandbox.cleanup_failed"]
    assert failed.ticket == "T-2" and failed.data["error"] == "worktree busy"


class FailsToStop(LocalSandbox):
    def stop(self) -> None:
        raise SandboxError("the engine did not answer")


class FailingProvider(LocalSandboxProvider):
    def start(self, workdir, *, labels, read_only=False, output_dir=None, extras=None):
        box = FailsToStop(workdir, labels, read_only, output_dir, extras)
        self.started.append(box)
        return box


def test_a_sandbox_that_cannot_be_stopped_keeps_its_worktree_and_says_so(tmp_path):
    boxes, transcript = sandboxes(tmp_path, FailingProvider())
    boxes.exec("T-3", tmp_path, "true")
    cleaned: list[str] = []
    boxes.retire("T-3", lambda: cleaned.append("removed"))
    boxes.close()
    assert cleaned == []  # it may still run: nothing touches its worktree
    (failed,) = [e for e in read_events(transcript.path) if e.kind == "sandbox.cleanup_failed"]
    assert failed.data["error"] == "the engine did not answer"


class SlowToStart(LocalSandboxProvider):
    """Starts only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.may_start = threading.Event()

    def start(self, workdir, *, labels, read_only=False, output_dir=None, extras=None):
        assert self.may_start.wait(10)
        return super().start(workdir, labels=labels, read_only=read_only, output_dir=output_dir, extras=extras)


def test_a_sandbox_no_command_was_given_is_quiet_at_once_one_that_ran_one_is_frozen(tmp_path):
    provider = SlowToStart()
    boxes, _ = sandboxes(tmp_path, provider)
    boxes.prepare("T-1", tmp_path)  # still starting: a role that wrote files only commits without waiting
    threading.Timer(1.0, provider.may_start.set).start()
    boxes.end_processes("T-1")
    with boxes.quiet("T-1"):
        assert provider.started == []
    boxes.exec("T-1", tmp_path, "true")  # now a command ran in it: it is checked and, not idle, frozen
    with boxes.quiet("T-1"):
        assert provider.started[0].paused
    assert not provider.started[0].paused
    boxes.release("T-1")
    boxes.prepare("T-1", tmp_path)  # a new sandbox for the key: no command in it yet
    with boxes.quiet("T-1"):
        pass
    assert provider.started[-1].pauses == 0
    boxes.close()


def test_while_a_verdict_runs_stops_and_starts_ahead_wait_unless_needed(tmp_path):
    provider = LocalSandboxProvider()
    boxes, transcript = sandboxes(tmp_path, provider)
    boxes.exec("T-1", tmp_path, "true")
    with boxes.urgent():
        boxes.release("T-1")  # a stop: held
        boxes.prepare("verdict:T-2", tmp_path, ahead=True)  # a later verdict's: held
        boxes.prepare("T-3", tmp_path)  # a role's: at once
        time.sleep(0.2)
        assert [b.labels["macrohard.ticket"] for b in provider.started] == ["T-1", "T-3"]
        assert not provider.started[0].stopped
        boxes.prepare("verdict:T-4", tmp_path, ahead=True)
        boxes.exec("verdict:T-4", tmp_path, "true")  # needed now: it starts, urgent or not
        assert [b.labels["macrohard.ticket"] for b in provider.started] == ["T-1", "T-3", "verdict:T-4"]
    boxes.close()  # the block closed: what waited went ahead, in order
    assert provider.started[0].stopped
    assert [b.labels["macrohard.ticket"] for b in provider.started][-1] == "verdict:T-2"
    assert [e.data["sandbox"] for e in read_events(transcript.path) if e.kind == "sandbox.stop"][0] == "T-1"


def test_quiet_stops_a_parked_sandbox_at_once_even_while_a_verdict_runs(tmp_path):
    provider = LocalSandboxProvider()
    boxes, _ = sandboxes(tmp_path, provider)
    boxes.exec("T-1", tmp_path, "true")
    boxes.release("T-1", later=True)  # parked, as after the ticket's tester
    with boxes.urgent():
        asked = time.monotonic()
        with boxes.quiet("T-1"):  # its next attempt commits: the parked sandbox stops first, now
            assert provider.started[0].stopped
        assert time.monotonic() - asked < 2
    boxes.close()


def test_stops_flushed_at_a_steps_start_wait_until_its_tickets_calls_are_under_way(tmp_path):
    provider = LocalSandboxProvider()
    boxes, transcript = sandboxes(tmp_path, provider)
    boxes.exec("T-1", tmp_path, "true")
    boxes.release("T-1", later=True)  # parked at its handoff
    boxes.before_calls(["T-2", "T-3"], step=True)  # dispatch: two tickets start
    boxes.flush()
    time.sleep(0.2)
    assert not provider.started[0].stopped  # the tickets' commits and prompts go first
    boxes.calling("T-2")
    time.sleep(0.2)
    assert not provider.started[0].stopped
    boxes.calling(None)  # every stretch is over (the deployer's call)
    deadline = time.monotonic() + 5
    while not provider.started[0].stopped and time.monotonic() < deadline:
        time.sleep(0.02)
    assert provider.started[0].stopped
    boxes.close()
    assert [e.data["sandbox"] for e in read_events(transcript.path) if e.kind == "sandbox.stop"] == ["T-1"]


def test_sandboxes_released_before_their_held_start_leave_no_worker_waiting(tmp_path):
    provider = LocalSandboxProvider()
    boxes, _ = sandboxes(tmp_path, provider)
    with boxes.urgent():
        for n in range(8):  # as many as the pool has workers: verdicts that ended before their command
            boxes.prepare(f"verdict:T-{n}", tmp_path, ahead=True, warm=lambda path: "true")
            boxes.release(f"verdict:T-{n}", later=True)
        # Needed now: a worker must be free for its start (with all eight waiting on held starts,
        # none ever was: the held starts, released at last, queued behind the workers waiting on them).
        ran = threading.Thread(target=boxes.exec, args=("T-9", tmp_path, "true"), daemon=True)
        ran.start()
        ran.join(3)
        assert not ran.is_alive()
    boxes.close()
