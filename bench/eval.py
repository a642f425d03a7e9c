"""Eval throughput: the bundled suite at --parallel 1 and 4, in one run, and what a case costs outside its run.

Every case of examples/suite runs on its script with a simulated latency per model call
(as a model endpoint would take); everything else is real (LangGraph, git, the Docker
sandbox, pytest, the hidden acceptance tests). Each `--parallel` runs the whole suite
from scratch, one after another, in one process. It reports per level the eval's wall
time, cases per minute, the speed-up over the first level, and per case the overhead
outside its run: the case's wall time (from its start to its score) less the run's own
active time (creating the run folder, checking the case's settings, the eval's own run
of the hidden acceptance tests on the release or main, reading the score from the
transcript and checkpoint). It checks that every level gave the same
scores. Exits 1 if they differ, or if an honest case is not solved or a cheating one is.

    python3 bench/eval.py [--latency 0.5] [--parallel 1 4] [--out bench/results/eval.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from macrohard.eval.executor import LocalExecutor
from macrohard.eval.results import EvalReport
from macrohard.eval.runner import EvalOptions, EvalRun
from macrohard.sandbox.docker import DockerSandboxProvider
from scripted_cases import scripted_case_provider

SUITE = Path(__file__).resolve().parents[1] / "examples" / "suite"


def run_once(workspaces: Path, parallel: int, provider: DockerSandboxProvider) -> EvalReport:
    run = EvalRun.start(EvalOptions(suite=SUITE), workspaces, parallel)
    return run.execute(LocalExecutor(parallel, lambda settings: provider))


def summary(report: EvalReport) -> dict[str, object]:
    overheads = [c.wall_s - c.run_s for c in report.cases]
    return {
        "parallel": report.parallel,
        "wall_s": round(report.wall_s, 2),
        "cases": len(report.cases),
        "cases_per_minute": round(60 * len(report.cases) / report.wall_s, 2),
        "case_wall_s": round(sum(c.wall_s for c in report.cases), 2),
        "run_s": round(sum(c.run_s for c in report.cases), 2),
        "overhead_per_case_s": {"mean": round(statistics.mean(overheads), 3), "max": round(max(overheads), 3),
                                "by_case": {c.name: round(c.wall_s - c.run_s, 3) for c in report.cases}},
        "model_calls": report.totals.model_calls,
        "scores": {c.name: [c.status, c.acceptance_passed, c.acceptance_total, c.solved] for c in report.cases},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="simulated seconds per model call")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4], help="cases at once, one eval each")
    parser.add_argument("--out", type=Path, default=Path("bench/results/eval.json"))
    args = parser.parse_args()

    provider = scripted_case_provider(args.latency)
    results = []
    with tempfile.TemporaryDirectory(prefix="macrohard-bench-eval-") as tmp:
        for p in args.parallel:
            results.append(summary(run_once(Path(tmp) / f"p{p}", p, provider)))

    first = results[0]
    for r in results:
        r["speedup"] = round(float(first["wall_s"]) / float(r["wall_s"]), 2)  # type: ignore[arg-type]
    same = all(r["scores"] == first["scores"] for r in results)
    scores: dict[str, list[object]] = first["scores"]  # type: ignore[assignment]
    honest = all(v[3] for name, v in scores.items() if not name.startswith("cheat"))
    no_cheat = not any(v[3] or v[1] == v[2] for name, v in scores.items() if name.startswith("cheat"))
    out = {"latency_s": args.latency, "suite": str(SUITE), "results": results,
           "checks": {"same scores at every level": same, "honest cases solved": honest, "no cheating case in full": no_cheat}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    console = Console()
    table = Table(title=f"examples/suite: {first['cases']} cases, {args.latency}s per model call", title_justify="left")
    for col in ("parallel", "wall s", "cases/min", "speed-up", "run s", "overhead/case s", "max s"):
        table.add_column(col, justify="right")
    for r in results:
        o = r["overhead_per_case_s"]
        table.add_row(str(r["parallel"]), str(r["wall_s"]), str(r["cases_per_minute"]), str(r["speedup"]), str(r["run_s"]),
                      str(o["mean"]), str(o["max"]))  # type: ignore[index]
    console.print(table)
    for name, met in out["checks"].items():  # type: ignore[attr-defined]
        console.print(f"{'ok    ' if met else 'FAILED'}  {name}")
    console.print(f"written to {args.out}")
    return 0 if all(out["checks"].values()) else 1  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
