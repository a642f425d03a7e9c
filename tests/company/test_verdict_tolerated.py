"""Tests that already fail at a run's base are tolerated, as often as they failed there, and nothing more."""

from macrohard.company.verdict import JUnit, judge


def report(failed: list[str], passed: list[str]) -> JUnit:
    return JUnit(tests=len(failed) + len(passed), failures=len(failed), passed_ids=passed, failed_ids=failed)


def test_a_known_failure_may_go_on_failing_and_the_exit_code_says_so():
    ok, _, why = judge(1, False, report(["tests.test_x::test_broken"], ["tests.test_x::test_ok"]),
                       {"tests.test_x::test_ok"}, {"tests.test_x::test_broken": 1})
    assert ok, why


def test_a_new_failure_is_not_hidden_behind_a_known_one():
    # Another test failing beside the known one; and a new test given the known test's id.
    for failed in (["tests.test_x::test_broken", "tests.test_x::test_new"], ["tests.test_x::test_broken"] * 2):
        ok, _, why = judge(1, False, report(failed, []), set(), {"tests.test_x::test_broken": 1})
        assert not ok and "1 of them already failing at the run's base" in why


def test_without_a_baseline_any_failure_fails():
    ok, _, why = judge(1, False, report(["tests.test_x::test_broken"], []), set())
    assert not ok and why == "1 failed and 0 errors of 1 tests"
