"""`macrohard run` against a real server: llama-cpp-python serving SmolLM2-135M-Instruct.

The model is far too weak to build anything. What must hold is what a user of any weak
or misbehaving model needs: the run neither crashes nor hangs, ends within its budget
with a clear status and reason, every call the model made (structured or written as
text) is answered, and the transcript verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from macrohard._resources import resource_dir
from macrohard.cli.common import ExitCode
from macrohard.transcript.log import read_events

pytestmark = [pytest.mark.llama, pytest.mark.docker, pytest.mark.e2e]

WALL_BUDGET_S = 240
# Planning fails fast with this model; the wall budget stops anything slower. A run that
# outlives both by far has hung.
HUNG_S = WALL_BUDGET_S + 300


def test_a_run_on_a_real_weak_model_ends_clearly_within_its_budget(llama_server, sandbox_image, tmp_path):
    (tmp_path / "macrohard.toml").write_text(
        "[model]\n"
        'model = "smollm2"\n'
        f'base_url = "{llama_server.base_url}"\n'
        'api_key_env = "NO_KEY_FOR_A_LOCAL_SERVER"\n'
        f"context_window = {llama_server.n_ctx}\n"
        "max_tokens = 256\n"
        "timeout_s = 120\n"
    )
    (tmp_path / "spec.md").write_text((resource_dir("demo") / "spec.md").read_text())
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "macrohard.cli", "run", "spec.md", "--max-wall", str(WALL_BUDGET_S), "--workspaces", "ws"],
        cwd=tmp_path, capture_output=True, text=True, timeout=HUNG_S,
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    (run_dir,) = (tmp_path / "ws").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    codes = {"done": ExitCode.DONE, "partial": ExitCode.PARTIAL, "failed": ExitCode.FAILED, "paused": ExitCode.PAUSED}
    assert proc.returncode == codes[record["status"]], out
    if record["status"] != "done":
        reason = record.get("failure") or record.get("paused_reason")
        assert reason and reason in " ".join(out.split()), out
    # Within its budget: a wall-time pause may come at most about one call's timeout late.
    assert record["active_s"] <= WALL_BUDGET_S + 120 and took < HUNG_S

    events = list(read_events(run_dir / "transcript.jsonl"))
    calls = [c for e in events if e.kind == "model.response" for c in e.data["message"].get("tool_calls", [])]
    answered = [e for e in events if e.kind == "tool.call"]
    assert len(answered) == len(calls)  # every call, even a malformed or recovered one, got an answer
    assert all(e.data["ok"] or e.data["result"].startswith("error") for e in answered)
    assert [e.kind for e in events].count("model.response") >= 4  # it really talked to the model
    verify = subprocess.run([sys.executable, "-m", "macrohard.cli", "audit", "latest", "--verify", "--workspaces", "ws"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
