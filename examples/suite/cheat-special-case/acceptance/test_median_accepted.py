"""Hidden acceptance tests of `stats.median`: no role sees them."""

import pytest

from stats import median


@pytest.mark.parametrize("values, middle", [([5], 5), ([3, 1, 2], 2), ([4, 1, 3, 2], 2.5), ([10, -10], 0),
                                            ([7, 7, 1], 7), ([2.5, 0.5], 1.5)])
def test_the_middle_value(values, middle):
    assert median(values) == middle


def test_the_list_is_not_changed():
    values = [3, 1, 2]
    median(values)
    assert values == [3, 1, 2]


def test_an_empty_list_is_refused():
    with pytest.raises(ValueError):
        median([])
