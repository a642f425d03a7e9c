"""Hidden acceptance tests for the demo's product, textstats: no role ever sees them."""

import subprocess
import sys

from textstats.counts import count_lines, count_words
from textstats.freq import top_words


def test_counts():
    assert count_lines("") == 0
    assert count_lines("one\ntwo\n") == 2
    assert count_words("a b\n c") == 3


def test_top_words_ignore_case_and_punctuation_and_break_ties_alphabetically():
    assert top_words("The cat, the dog. A cat!", 2) == [("cat", 2), ("the", 2)]
    assert top_words("b a", 5) == [("a", 1), ("b", 1)]


def test_the_command_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one two two\nthree three three\n", encoding="utf-8")
    shown = subprocess.run([sys.executable, "-m", "textstats", str(path), "--top", "2"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown == ["lines: 2", "words: 6", "three 3", "two 2"]
