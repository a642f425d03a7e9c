"""`macrohard demo`'s example: a product the project is proud of, and the story it tells on the way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from macrohard.transcript.log import Event, read_events


@pytest.fixture(scope="module")
def events(demo_run_dir: Path) -> list[Event]:
    return list(read_events(demo_run_dir / "transcript.jsonl"))


def textstats(repo: Path, tmp_path: Path, content: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    sample = tmp_path / "sample.txt"
    sample.write_bytes(content)
    return subprocess.run([sys.executable, "-m", "textstats", str(sample), *args], cwd=repo, capture_output=True,
                          encoding="utf-8", env={"PYTHONPATH": str(repo), "PYTHONIOENCODING": "utf-8"})


def test_the_product_counts_words_of_every_language_whole(demo_run_dir, tmp_path):
    result = textstats(demo_run_dir / "repo", tmp_path, "Café naïve café, CAFÉ; «naïve» the\n".encode(), "--top", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["lines: 1", "words: 6", "café 3", "naïve 2"]


def test_the_product_refuses_a_negative_top_instead_of_dropping_a_word(demo_run_dir, tmp_path):
    result = textstats(demo_run_dir / "repo", tmp_path, b"a b c\n", "--top", "-1")
    assert result.returncode == 2 and result.stdout == ""
    assert "--top" in result.stderr and "Traceback" not in result.stderr
    assert textstats(demo_run_dir / "repo", tmp_path, b"a b c\n", "--top", "0").stdout.splitlines() == ["lines: 1", "words: 3"]


def test_the_product_says_so_in_one_line_when_a_file_is_not_utf8(demo_run_dir, tmp_path):
    result = textstats(demo_run_dir / "repo", tmp_path, "café\n".encode("latin-1"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"textstats: cannot read {tmp_path / 'sample.txt'}: it is not UTF-8 text"]


def test_the_testers_tests_catch_a_real_bug_that_attempt_2_fixes(events):
    verdicts = [e for e in events if e.kind == "verdict" and e.ticket == "T-2"]
    assert [(e.data["passed"], e.data["failures"]) for e in verdicts] == [(False, 2), (True, 0)]
    # The first attempt passed the tests of what it got right, and failed those of the bug: case and punctuation.
    assert sorted(verdicts[0].data["passed_ids"]) == ["tests.test_freq::test_a_negative_n_is_refused",
                                                     "tests.test_freq::test_ties_are_alphabetical_and_n_is_a_limit"]
    # Every test a tester added fails without its ticket, as the orchestrator requires.
    bases = [e for e in events if e.kind == "verdict.base"]
    assert len(bases) == 3 and all(e.data["new_tests"] and not e.data["pass_on_base"] for e in bases)
    final = next(e for e in events if e.kind == "final.suite")
    assert final.data["passed"] and final.data["tests"] == 12


def test_the_spec_title_is_in_the_plan_prompt_once(events):
    request = next(e for e in events if e.kind == "model.request" and e.role == "product_manager")
    prompt = request.data["messages"][1]["content"]
    assert prompt.count("# textstats") == 1, prompt


def test_audit_shows_the_image_build_and_the_smoke_check(demo_run_dir, monkeypatch):
    from typer.testing import CliRunner

    from macrohard.cli import app

    monkeypatch.chdir(demo_run_dir.parent.parent)
    out = CliRunner().invoke(app, ["audit", demo_run_dir.name, "--workspaces", str(demo_run_dir.parent),
                                   "--kind", "image"]).output
    assert "image.build" in out and "built textstats:0.1.0 (sha256:" in out and "from the default Dockerfile" in out
    out = CliRunner().invoke(app, ["audit", demo_run_dir.name, "--workspaces", str(demo_run_dir.parent),
                                   "--kind", "smoke"]).output
    assert "textstats:0.1.0 cli $ python3 -m textstats docs/PRD.md --top 5 -> exit 0: pass" in out
