"""Hidden acceptance tests of `units.to_celsius`: no role sees them."""

import pytest

from units import to_celsius


@pytest.mark.parametrize("fahrenheit, celsius", [(212, 100), (32, 0), (-40, -40), (98.6, 37), (0, -17.7778)])
def test_fahrenheit_to_celsius(fahrenheit, celsius):
    assert to_celsius(fahrenheit) == pytest.approx(celsius, abs=1e-3)
