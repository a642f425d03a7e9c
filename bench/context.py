"""What context management saves: one long engineer session with and without masking, in one run.

A scripted engineer reads a large module three times per step (different parts of it,
as a model working through the file would) for 30 steps, then finishes, on the real
agent loop with the real file tools in a temporary folder; only the model is scripted.
The same session runs twice: with the configured context window (old results are
masked) and with a window so large that nothing is ever masked (the full history, as
before context management). Request sizes are the loop's own estimates (about four
characters a token, tool schemas included), the same measure for both runs.

    python3 bench/context.py [--window 32768] [--max-tokens 8192] [--steps 30] [--reads 3]
                             [--out bench/results/context.json]

Targets: no request over the window (with room left for the answer), and the total
prompt tokens with masking at most 0.5 of the full history's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from macrohard._resources import resource_dir
from macrohard.agent.loop import AgentLoop
from macrohard.agent.tools import Confined, EditFile, ListFiles, ReadFile, WriteFile
from macrohard.config import ModelSettings
from macrohard.llm.scripted import ScriptedModel, ScriptStep
from macrohard.roles import load_roles
from macrohard.transcript.log import TranscriptLog, read_events

MODULE_LINES = 3000
LINES_PER_READ_STEP = 30  # each read starts this many lines after the one before
UNBOUNDED = 10**9  # a window nothing fills: the full history is sent every time


def large_module() -> str:
    """About 150 KB of Python: far more than one read shows."""
    out = []
    for i in range(MODULE_LINES // 3):
        out += [f"def handler_{i:04d}(request):", f"    return {{'id': {i}, 'path': request.path, 'ok': True}}", ""]
    return "\n".join(out) + "\n"


def script(steps: int, reads: int) -> dict[str, dict[str, list[ScriptStep]]]:
    def read(k: int) -> dict[str, Any]:
        return {"read_file": {"path": "app/handlers.py", "start": 1 + (LINES_PER_READ_STEP * k) % MODULE_LINES}}

    session = [ScriptStep.model_validate({"calls": [read(reads * n + j) for j in range(reads)]}) for n in range(steps)]
    session[-1].calls += ScriptStep.model_validate({"calls": [{"finish": {"summary": "read it all"}}]}).calls
    return {"engineer": {"T-1": session}}


def run_session(folder: Path, steps: int, reads: int, window: int, max_tokens: int) -> dict[str, Any]:
    root = folder / "wt"
    (root / "app").mkdir(parents=True)
    (root / "app" / "handlers.py").write_text(large_module())
    fs = Confined(root)
    role = load_roles(resource_dir("roles"))["engineer"].model_copy(update={"max_steps": steps})
    log = TranscriptLog(folder / "transcript.jsonl", "bench")
    loop = AgentLoop(
        role, ScriptedModel(script(steps, reads)), [ListFiles(fs), ReadFile(fs), WriteFile(fs), EditFile(fs)], log,
        task="T-1", ticket="T-1", context_window=window, max_tokens=max_tokens,
    )
    result = loop.run("Implement T-1: read app/handlers.py and explain it.")
    transcript = folder / "transcript.jsonl"
    events = list(read_events(transcript)) if transcript.exists() else []  # nothing was sent: nothing fit
    sizes = [int(e.data["estimated_tokens"]) for e in events if e.kind == "model.request"]
    answered = [e.data["usage"] for e in events if e.kind == "model.response"]
    return {
        "outcome": str(result.outcome),
        "steps": result.steps,
        "requests": len(sizes),
        "largest_request_tokens": max(sizes, default=0),
        "total_prompt_tokens": sum(sizes),
        # the scripted model's own count: message text only, no tool schemas
        "total_prompt_tokens_by_model": sum(int(u["prompt_tokens"]) for u in answered),
        "maskings": sum(1 for e in events if e.kind == "context.compacted"),
        "requests_tokens": sizes,
    }


def main() -> int:
    defaults = ModelSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=defaults.context_window, help="the model's context window, tokens")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="room kept for the answer, tokens")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reads", type=int, default=3, help="reads of the large file per step")
    parser.add_argument("--out", type=Path, default=Path("bench/results/context.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="macrohard-bench-") as tmp:
        (Path(tmp) / "masked").mkdir()
        (Path(tmp) / "full").mkdir()
        masked = run_session(Path(tmp) / "masked", args.steps, args.reads, args.window, args.max_tokens)
        full = run_session(Path(tmp) / "full", args.steps, args.reads, UNBOUNDED, args.max_tokens)

    room = args.window - args.max_tokens
    ratio = masked["total_prompt_tokens"] / max(1, full["total_prompt_tokens"])
    targets = {
        f"largest request <= {room} (window {args.window} - max_tokens {args.max_tokens})": (
            masked["largest_request_tokens"], masked["largest_request_tokens"] <= room,
        ),
        "total prompt tokens, masked / full history <= 0.5": (round(ratio, 3), ratio <= 0.5),
        "both sessions finished": (
            f"{masked['outcome']}, {full['outcome']}", masked["outcome"] == full["outcome"] == "finished",
        ),
    }
    out = {
        "window": args.window, "max_tokens": args.max_tokens, "steps": args.steps, "reads_per_step": args.reads,
        "masked": masked, "full_history": full, "ratio": round(ratio, 3),
        "targets": {k: {"value": v, "met": met} for k, (v, met) in targets.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    console = Console()
    title = f"{args.steps} steps, {args.reads} reads of a {MODULE_LINES}-line module per step, window {args.window}"
    table = Table(title=title, title_justify="left")
    for col in ("history", "requests", "largest request", "total prompt tokens", "by the model", "maskings", "outcome"):
        table.add_column(col, justify="right")
    for name, r in (("masked", masked), ("full", full)):
        table.add_row(name, *(str(r[k]) for k in (
            "requests", "largest_request_tokens", "total_prompt_tokens", "total_prompt_tokens_by_model", "maskings", "outcome",
        )))
    console.print(table)
    for name, (value, met) in targets.items():
        console.print(f"{'met ' if met else 'MISSED'}  {name}: {value}")
    console.print(f"written to {args.out}")
    return 0 if all(met for _, met in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
