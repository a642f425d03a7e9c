"""run, demo, resume, approve, reject and runs: exit codes, messages and reasons, on the demo's script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from macrohard._resources import resource_dir
from macrohard.cli.common import ExitCode

DEMO = resource_dir("demo")

pytestmark = pytest.mark.usefixtures("local_sandbox")


def run_json(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "workspaces").glob("*/run.json")
    return json.loads(path.read_text())


def test_the_exit_code_says_how_a_run_stopped_and_approvals_go_on_from_it(cli, tmp_path):
    waiting = cli("demo", "--approve", "plan", "--approve", "deploy")
    assert waiting.exit_code == ExitCode.AWAITING_APPROVAL == 5, waiting.output
    assert "waiting for approval of the plan" in waiting.output and "macrohard approve" in waiting.output

    # The demo's product manager writes the plan again after a rejection, and it waits for approval again.
    replanned = cli("reject", "latest", "--comment", "Keep the command line in its own ticket.")
    assert replanned.exit_code == 5, replanned.output
    assert "Reject the plan of run" in replanned.output and "revised after review" in replanned.output
    built = cli("approve", "latest")
    assert built.exit_code == 5 and "waiting for approval of the deploy" in built.output, built.output
    # So does its deployer, with the release notes.
    rewritten = cli("reject", "latest", "--comment", "Say how words are counted.")
    assert rewritten.exit_code == 5 and "Reject the deploy of run" in rewritten.output, rewritten.output
    assert "(\"café\" is one word)" in rewritten.output  # the second release notes

    done = cli("approve", "latest", "--comment", "ship it")
    assert done.exit_code == ExitCode.DONE == 0, done.output
    assert ": done" in done.output and "release:    v0.1.0" in done.output
    record = run_json(tmp_path)
    assert record["status"] == "done"

    # An ended run is no longer waiting: one line saying so, before anything else is printed.
    again = cli("approve", "latest")
    assert again.exit_code == ExitCode.FAILED
    assert again.output.startswith("error: run ") and "is not waiting for an approval: it is done and has ended" in again.output
    assert "Approve the" not in again.output and len(again.output.strip().splitlines()) == 1
    resumed = cli("resume", "latest")
    assert resumed.exit_code == ExitCode.FAILED and "Resuming" not in resumed.output
    assert "is done and has ended; there is nothing to resume" in resumed.output


def test_a_partial_run_exits_3_and_runs_says_which_tickets_were_lost(cli, tmp_path):
    result = cli("run", str(DEMO / "spec.md"), "--script", str(DEMO / "script.yaml"), "--max-attempts", "1")
    assert result.exit_code == ExitCode.PARTIAL == 3, result.output
    listed = cli("runs")
    assert listed.exit_code == 0
    assert "partial" in listed.output and "T-2 failed" in listed.output and "T-3 blocked" in listed.output


def test_a_failed_run_exits_1_and_its_reason_is_shown_in_the_summary_and_by_runs(cli, tmp_path):
    # Every planning session tries to finish a plan with no ticket: each finish is refused, and
    # three refusals in a row end the session unfinished.
    refused = {"tool": "finish", "raw": '{"summary": "There is nothing to plan."}'}
    session = [{"calls": [refused]}, {"calls": [refused]}, {"calls": [refused], "end": True}]
    (tmp_path / "script.yaml").write_text(yaml.safe_dump({"product_manager": {"plan": session * 3}}))
    result = cli("run", str(DEMO / "spec.md"), "--script", "script.yaml")
    assert result.exit_code == ExitCode.FAILED, result.output
    reason = "planning failed: the product manager did not finish a plan in 3 sessions"
    assert reason in result.output and "the plan has no ticket" in result.output
    assert reason in cli("runs").output.replace("\n", " ").replace("  ", " ")
    assert run_json(tmp_path)["failure"].startswith(reason)


def test_a_paused_run_exits_4_and_says_which_limit_to_raise(cli, tmp_path):
    result = cli("demo", "--max-tokens", "2000")
    assert result.exit_code == ExitCode.PAUSED == 4, result.output
    assert "paused: token budget reached" in result.output
    assert "raise the limit with --max-tokens" in result.output
    assert "paused: token budget reached" in cli("runs").output


def test_the_same_kind_of_mistake_gets_the_same_exit_code(cli, tmp_path):
    (tmp_path / "spec.md").write_text("# tool\nBuild a tool.\n")
    usage = [
        ("run", "spec.md", "--max-parallel", "0"),  # a value out of range
        ("run", "spec.md", "--max-parallel", "two"),  # a value of the wrong type
        ("run", "spec.md", "--approve", "plans"),  # a value that is not one of the choices
        ("run", "spec.md", "--no-such-option"),
        ("run",),  # a missing argument
        ("reject", "latest"),  # a missing option
        ("reject", "latest", "--comment", " "),  # an empty one
        ("serve", "--port", "70000"),
        ("serve", "--host", "0.0.0.0"),  # options that do not go together
    ]
    for args in usage:
        result = cli(*args)
        assert result.exit_code == ExitCode.USAGE == 2, (args, result.output)
    for args in [("run", "nope.md"), ("audit", "r-1"), ("resume", "latest")]:  # what the values point to
        result = cli(*args)
        assert result.exit_code == ExitCode.FAILED, (args, result.output)


def test_a_binary_file_is_refused_as_a_spec(cli, tmp_path):
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "latin1.md").write_bytes("# Caf\xe9\n".encode("latin-1"))
    said = {
        "logo.png": "error: spec file logo.png is not text: it holds a NUL byte (at byte 8) "
                    "(give a Markdown (or plain text) file describing what to build)",
        "latin1.md": "error: spec file latin1.md is not UTF-8 text (byte 5 cannot be decoded) "
                     "(save it as UTF-8, or give a Markdown (or plain text) file describing what to build)",
    }
    for name, error in said.items():
        result = cli("run", name, "--script", str(DEMO / "script.yaml"))
        assert result.exit_code == 1 and result.output.strip().splitlines() == [error], result.output
    assert not (tmp_path / "workspaces").exists()


def test_the_demo_takes_one_rejection_at_each_gate_without_a_terminal(tmp_path):
    """The script's second sessions: written for `macrohard reject` on the demo."""
    script = yaml.safe_load((DEMO / "script.yaml").read_text())
    for role, task in (("product_manager", "plan"), ("deployer", "release")):
        steps = script[role][task]
        ends = [i for i, step in enumerate(steps) if not step.get("calls") or step.get("end")]
        assert len(ends) == 2 and ends[-1] == len(steps) - 1, (role, ends)
        assert steps[ends[0] + 1]["expect"] == "rejected with this comment"
