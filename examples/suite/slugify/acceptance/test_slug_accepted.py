"""Hidden acceptance tests of `slug`: no role sees them."""

from slug import slugify


def test_words_are_joined_by_single_dashes():
    assert slugify("Hello, World!") == "hello-world"
    assert slugify("  A  B  ") == "a-b"
    assert slugify("one--two__three") == "one-two-three"


def test_digits_stay_and_case_goes():
    assert slugify("Python 3.12 Release") == "python-3-12-release"
    assert slugify("ABC") == "abc"


def test_nothing_to_keep_gives_an_empty_slug():
    assert slugify("") == ""
    assert slugify("!!! ???") == ""


def test_the_result_is_a_plain_string():
    assert type(slugify("x y")) is str
