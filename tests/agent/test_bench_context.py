"""bench/context.py runs offline in seconds: its targets are checked like a test."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "context.py"


def test_the_context_benchmark_meets_its_targets(tmp_path):
    out = tmp_path / "context.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--steps", "12", "--out", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert all(t["met"] for t in result["targets"].values())
    assert result["masked"]["largest_request_tokens"] <= 32_768 - 8192 < result["full_history"]["largest_request_tokens"]
    assert result["masked"]["maskings"] > 0 and result["full_history"]["maskings"] == 0


def test_the_benchmark_says_so_when_a_target_is_missed(tmp_path):
    # 512 tokens for the prompt hold not even the engineer's system prompt and tools
    run = subprocess.run(
        [sys.executable, str(BENCH), "--steps", "3", "--window", "1024", "--max-tokens", "512", "--out", str(tmp_path / "c.json")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"},
    )
    assert run.returncode == 1 and "MISSED  both sessions finished: overflow, finished" in run.stdout
