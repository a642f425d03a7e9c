"""Hidden acceptance tests of `roman`: no role sees them."""

import pytest

from roman import from_roman, to_roman


@pytest.mark.parametrize("n, text", [(1, "I"), (4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"),
                                     (400, "CD"), (1994, "MCMXCIV"), (2024, "MMXXIV"), (3999, "MMMCMXCIX")])
def test_known_numerals(n, text):
    assert to_roman(n) == text
    assert from_roman(text) == n


def test_every_number_goes_there_and_back():
    assert all(from_roman(to_roman(n)) == n for n in range(1, 4000))


@pytest.mark.parametrize("n", [0, -1, 4000])
def test_numbers_out_of_range_are_refused(n):
    with pytest.raises(ValueError):
        to_roman(n)


@pytest.mark.parametrize("text", ["", "IIII", "ABC", "iv", "VX", "MMMM"])
def test_what_is_not_a_standard_numeral_is_refused(text):
    with pytest.raises(ValueError):
        from_roman(text)
