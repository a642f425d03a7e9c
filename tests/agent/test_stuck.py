from macrohard.agent.loop import Outcome
from macrohard.agent.stuck import REPEATS, WINDOW, StuckWatch
from macrohard.llm.base import ToolCall

READ = {"read_file": {"path": "a.py"}}


def call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id="x", name=name, arguments=arguments)


def test_the_same_look_three_times_is_a_finding_whatever_the_spacing_of_its_json():
    watch = StuckWatch()
    assert watch.saw(call("read_file", '{"path": "a.py"}'), True, "x") is None
    assert watch.saw(call("list_files", "{}"), True, "a.py") is None
    assert watch.saw(call("read_file", '{"path":"a.py"}'), True, "x") is None
    finding = watch.saw(call("read_file", '{ "path" : "a.py" }'), True, "x")
    assert finding is not None and f"read_file was called {REPEATS} times with the same arguments" in finding


def test_a_change_in_between_starts_the_count_afresh_and_old_calls_fall_out_of_the_window():
    watch = StuckWatch()
    for n in range(2 * REPEATS):
        assert watch.saw(call("run_shell", '{"command": "pytest"}'), True, "1 failed") is None or n >= REPEATS
        if n % 2 == 0:
            assert watch.saw(call("edit_file", f'{{"path": "a.py", "n": {n}}}'), True, "edited a.py") is None
    spaced = StuckWatch()
    for n in range(3 * WINDOW):
        arguments = '{"path": "a.py"}' if n % WINDOW == 0 else f'{{"path": "f{n}.py"}}'
        assert spaced.saw(call("read_file", arguments), True, "x") is None


def test_the_same_error_three_times_is_a_finding_even_apart():
    watch = StuckWatch()
    refused = "error: tests/test_a.py belongs to the tester"
    for n in range(REPEATS - 1):
        assert watch.saw(call("write_file", f'{{"path": "tests/test_a.py", "content": "{n}"}}'), False, refused) is None
        assert watch.saw(call("write_file", f'{{"path": "m{n}.py", "content": "x"}}'), True, "wrote") is None
    finding = watch.saw(call("write_file", '{"path": "tests/test_a.py", "content": "z"}'), False, refused)
    assert finding == f"the same error {REPEATS} times: write_file: {refused}"


def with_a_file(tmp_path):
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / "a.py").write_text("x = 1\n")


def test_a_session_going_round_in_circles_is_nudged_then_ends_as_stuck(run_agent, tmp_path):
    with_a_file(tmp_path)
    s = run_agent({"engineer": {"T-1": [
        {"calls": [READ]}, {"calls": [READ]}, {"calls": [READ]},
        {"expect": "going round in circles", "calls": [{"list_files": {}}]},
        {"calls": [READ]},
        {"say": "never reached"},
    ]}}, max_steps=10)
    assert not s.result.finished and s.result.outcome is Outcome.STUCK and s.result.steps == 5
    assert s.result.reason.startswith("stuck: read_file was called")
    assert [e.data["why"] for e in s.of("agent.nudged")] == ["stuck"]


def test_a_nudge_that_helps_lets_the_session_finish(run_agent, tmp_path):
    with_a_file(tmp_path)
    s = run_agent({"engineer": {"T-1": [
        {"calls": [READ]}, {"calls": [READ]}, {"calls": [READ]},
        {"expect": "going round in circles", "calls": [{"write_file": {"path": "a.py", "content": "x = 2\n"}}]},
        {"calls": [READ]},
        {"say": "done"},
    ]}}, max_steps=10)
    assert s.result.finished and len(s.of("agent.nudged")) == 1


def test_the_same_error_again_ends_the_session_as_stuck(run_agent, tmp_path):
    with_a_file(tmp_path)
    bad = {"edit_file": {"path": "a.py", "old": "missing", "new": "y"}}
    ok = {"write_file": {"path": "a.py", "content": "x"}}
    s = run_agent({"engineer": {"T-1": [
        {"calls": [bad]}, {"calls": [ok]}, {"calls": [bad]}, {"calls": [ok]}, {"calls": [bad]},
        {"expect": "the same error 3 times", "calls": [ok]}, {"calls": [bad]},
    ]}}, max_steps=10)
    assert s.result.outcome is Outcome.STUCK and "occurs 0 times" in s.result.reason
