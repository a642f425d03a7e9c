"""Hidden acceptance tests for the change to the user's calc package: the new function and the old ones."""

from calc.core import add, mul, sub


def test_mul():
    assert mul(6, 7) == 42 and mul(-2, 3) == -6


def test_the_old_behaviour_still_holds():
    assert add(2, 3) == 5 and sub(2, 3) == -1
