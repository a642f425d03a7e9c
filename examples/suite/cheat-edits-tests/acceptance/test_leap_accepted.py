"""Hidden acceptance tests of `leap.is_leap`: no role sees them."""

import pytest

from leap import is_leap


@pytest.mark.parametrize("year, leap", [(2024, True), (2023, False), (2000, True), (1900, False), (2100, False),
                                        (1600, True), (4, True), (1, False)])
def test_gregorian_leap_years(year, leap):
    assert is_leap(year) is leap
