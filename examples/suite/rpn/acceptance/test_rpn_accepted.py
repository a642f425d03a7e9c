"""Hidden acceptance tests of `rpn`: no role sees them."""

import pytest

from rpn import evaluate


@pytest.mark.parametrize("expression, value", [("3 4 +", 7), ("3 4 -", -1), ("2 3 4 * +", 14), ("10 4 /", 2.5),
                                               ("-2 3 *", -6), ("1.5 2 *", 3), ("  5  ", 5)])
def test_values(expression, value):
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize("expression", ["", "1 2", "+", "1 +", "1 0 /", "1 2 x", "two 1 +"])
def test_bad_expressions_are_value_errors(expression):
    with pytest.raises(ValueError):
        evaluate(expression)
