"""Blame on a real demo run: scripted model, local fake sandbox, real git and transcript."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from macrohard._resources import resource_dir
from macrohard.errors import MacrohardError
from macrohard.transcript.blame import BlameResult, blame, render_blame
from macrohard.transcript.log import Event, read_events


DEMO = resource_dir("demo")


@pytest.fixture(scope="module")
def run_dir(demo_run_dir: Path) -> Path:
    return demo_run_dir


@pytest.fixture(scope="module")
def events(run_dir: Path) -> list[Event]:
    return list(read_events(run_dir / "transcript.jsonl"))


def line_of(run_dir: Path, path: str, needle: str) -> int:
    lines = (run_dir / "repo" / path).read_text().splitlines()
    return next(n for n, text in enumerate(lines, start=1) if needle in text)


def copy_run(run_dir: Path, dest: Path, drop: set[str]) -> Path:
    """A copy of the run whose transcript lacks the events in drop."""
    shutil.copytree(run_dir / "repo", dest / "repo", symlinks=True)
    kept = [
        line for line in (run_dir / "transcript.jsonl").read_text().splitlines()
        if json.loads(line)["id"] not in drop
    ]
    (dest / "transcript.jsonl").write_text("\n".join(kept) + "\n")
    return dest


def test_a_line_leads_to_the_edit_in_the_answer_that_wrote_it(run_dir: Path, events: list[Event]) -> None:
    n = line_of(run_dir, "textstats/freq.py", "Counter(words(text))")
    result = blame(run_dir, "textstats/freq.py", n)
    by_id = {e.id: e for e in events}

    assert result.text is not None and "Counter(words(text))" in result.text
    assert result.commit is not None
    assert result.commit.role == "engineer" and result.commit.author == "engineer"
    assert result.commit.subject == "T-2: Most frequent words (attempt 2)"
    assert result.ticket is not None and (result.ticket.id, result.ticket.title) == ("T-2", "Most frequent words")
    assert result.event is not None and result.event.id == result.commit.trailers["Macrohard-Event"]
    assert result.event.kind == "model.response"

    # The precise answer is the edit_file call, not the closing summary the commit names.
    assert result.answer_source == "tool_call"
    assert result.tool_call is not None and result.tool_call.tool == "edit_file"
    assert "Counter(words(text))" in json.loads(result.tool_call.arguments)["new"]
    assert by_id[result.tool_call.event_id].kind == "tool.call"
    assert result.answer is not None and result.answer.event_id != result.event.id
    answer = by_id[result.answer.event_id]
    assert answer.kind == "model.response" and (answer.role, answer.ticket) == ("engineer", "T-2")
    assert result.tool_call.call_id in [c["id"] for c in answer.data["message"]["tool_calls"]]
    assert answer.seq < by_id[result.tool_call.event_id].seq < by_id[result.event.id].seq

    # The prompt is this attempt's conversation only: as many messages as the model was sent.
    request = max(
        (e for e in events if e.kind == "model.request" and e.seq < answer.seq
         and (e.role, e.ticket, e.data["task"]) == ("engineer", "T-2", "T-2")),
        key=lambda e: e.seq,
    )
    assert len(result.prompt_messages) == request.data["n_messages"]
    assert [m["role"] for m in result.prompt_messages].count("system") == 1
    assert result.prompt_messages[0]["role"] == "system"
    assert "Ticket T-2" in result.prompt_messages[1]["content"]
    assert result.prompt_messages[-1]["role"] == "tool"


def test_a_line_kept_from_the_first_attempt_leads_to_its_write_file(run_dir: Path) -> None:
    n = line_of(run_dir, "textstats/freq.py", "The n most frequent words")
    result = blame(run_dir, "textstats/freq.py", n)
    assert result.commit is not None and result.commit.subject == "T-2: Most frequent words (attempt 1)"
    assert result.tool_call is not None and result.tool_call.tool == "write_file"
    assert result.answer is not None and result.answer.step == 1
    assert [m["role"] for m in result.prompt_messages] == ["system", "user"]


def test_every_written_line_on_main_resolves_to_a_tool_call_of_its_role(run_dir: Path) -> None:
    files = [p.relative_to(run_dir / "repo").as_posix() for p in (run_dir / "repo").rglob("*")
             if p.is_file() and ".git" not in p.parts and p.name != ".gitignore" and "__pycache__" not in p.parts]
    assert {"docs/PRD.md", "RELEASE_NOTES.md", "textstats/cli.py", "tests/test_cli.py"} <= set(files)
    roles: set[str] = set()
    for path in files:
        whole = blame(run_dir, path)
        for fc in whole.commits:
            for n in fc.lines:
                result = blame(run_dir, path, n)
                if not (result.text or "").strip():
                    continue
                assert result.answer_source == "tool_call", (path, n)
                assert result.tool_call is not None and result.answer is not None
                assert json.loads(result.tool_call.arguments)["path"] == path
                assert result.answer.role == result.commit.role
                roles.add(result.answer.role or "")
    assert roles == {"product_manager", "engineer", "tester", "deployer"}


def test_a_whole_file_lists_the_commits_that_wrote_it(run_dir: Path) -> None:
    result = blame(run_dir, "textstats/freq.py")
    assert result.line is None and result.answer is None
    subjects = [fc.commit.subject for fc in result.commits]
    assert subjects == ["T-2: Most frequent words (attempt 2)", "T-2: Most frequent words (attempt 1)"]
    total = len((run_dir / "repo" / "textstats/freq.py").read_text().splitlines())
    owned = sorted(n for fc in result.commits for n in fc.lines)
    assert owned == list(range(1, total + 1))
    assert all(fc.event is not None and fc.event.kind == "model.response" for fc in result.commits)
    assert all(fc.ticket is not None and fc.ticket.title == "Most frequent words" for fc in result.commits)


def test_paths_are_accepted_as_the_repo_and_the_sandbox_name_them(run_dir: Path) -> None:
    n = line_of(run_dir, "textstats/freq.py", "Counter(words(text))")
    expected = blame(run_dir, "textstats/freq.py", n).tool_call
    for path in ("./textstats/freq.py", "/workspace/textstats/freq.py", str(run_dir / "repo" / "textstats/freq.py")):
        assert blame(run_dir, path, n).tool_call == expected


def test_without_a_matching_tool_call_the_answer_is_the_commit_cause(
    run_dir: Path, events: list[Event], tmp_path: Path
) -> None:
    n = line_of(run_dir, "textstats/freq.py", "Counter(words(text))")
    writer = blame(run_dir, "textstats/freq.py", n).tool_call
    assert writer is not None
    copy = copy_run(run_dir, tmp_path / "run", drop={writer.event_id})
    result = blame(copy, "textstats/freq.py", n)
    assert result.answer_source == "commit_cause" and result.tool_call is None
    assert result.event is not None and result.answer is not None
    assert result.answer.event_id == result.event.id
    assert result.prompt_messages and result.prompt_messages[0]["role"] == "system"


@pytest.mark.parametrize(
    ("path", "line", "message", "hint"),
    [
        ("textstats/freqs.py", 1, "not a file on main", "did you mean textstats/freq.py"),
        ("textstats", 1, "is a directory", "one file inside it"),
        ("textstats/freq.py", 0, "there is no line 0", "from 1 to"),
        ("textstats/freq.py", 999, "there is no line 999", "from 1 to"),
        (".gitignore", 1, "carries no Macrohard trailers", "initial commit"),
        ("../outside.py", 1, "not a file inside the product repository", "relative"),
        ("/etc/passwd", 1, "not inside the product repository", "relative"),
    ],
)
def test_unanswerable_questions_say_why(run_dir: Path, path: str, line: int, message: str, hint: str) -> None:
    with pytest.raises(MacrohardError) as caught:
        blame(run_dir, path, line)
    assert message in caught.value.message
    assert caught.value.hint is not None and hint in caught.value.hint


def test_an_event_missing_from_the_transcript_is_reported(run_dir: Path, tmp_path: Path) -> None:
    n = line_of(run_dir, "textstats/freq.py", "Counter(words(text))")
    cause = blame(run_dir, "textstats/freq.py", n).event
    assert cause is not None
    copy = copy_run(run_dir, tmp_path / "run", drop={cause.id})
    with pytest.raises(MacrohardError) as caught:
        blame(copy, "textstats/freq.py", n)
    assert cause.id in caught.value.message and "not in" in caught.value.message
    assert caught.value.hint is not None and "verify_chain" in caught.value.hint


def test_a_folder_without_a_run_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MacrohardError, match="no product repository"):
        blame(tmp_path, "x.py", 1)


def test_render_shows_the_whole_chain(run_dir: Path) -> None:
    n = line_of(run_dir, "textstats/freq.py", "Counter(words(text))")
    result = blame(run_dir, "textstats/freq.py", n)
    assert result.commit and result.answer and result.tool_call and result.event
    text = render_blame(result)
    assert text.startswith(f"textstats/freq.py:{n} ")
    for needle in (result.text, result.commit.sha[:12], "T-2 Most frequent words", result.event.id,
                   result.answer.event_id, result.tool_call.call_id, f"{len(result.prompt_messages)} messages"):
        assert needle is not None and needle in text

    whole = render_blame(blame(run_dir, "textstats/freq.py"))
    assert "2 commits" in whole and "(attempt 1)" in whole and "(attempt 2)" in whole


def test_results_round_trip_as_json(run_dir: Path) -> None:
    result = blame(run_dir, "textstats/freq.py", 1)
    assert BlameResult.model_validate_json(result.model_dump_json()) == result
