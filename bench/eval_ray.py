"""Eval on a Ray cluster: the bundled suite on the local executor and on a local Ray cluster, in one run.

A local cluster (a head and `--nodes` worker nodes, each offering one `docker` slot per
`--slots`) is started on this machine; every node uses this machine's Docker engine, so
the comparison is of the executors, not of more hardware. Both evals run every case of
examples/suite on its script with a simulated latency per model call, `--parallel`
cases at once (default: the cluster's slots). It reports each eval's wall time and, per
case, the executor's overhead: from the case being handed to the executor to its result
being back, less the case's own wall time (what `run_case` took where it ran). On the
cluster that is Ray's scheduling, a worker process's start and import of macrohard, the
events' trips through the mailbox actor and the result's return. It checks both evals
gave the same per-case scores; exits 1 if not.

    python3 bench/eval_ray.py [--latency 0.5] [--nodes 2] [--slots 1] [--out bench/results/eval_ray.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from macrohard.eval.executor import CaseExecutor, CaseJob, LocalExecutor
from macrohard.eval.ray_executor import RayExecutor
from macrohard.eval.results import CaseResult, EvalReport
from macrohard.eval.runner import EvalOptions, EvalRun
from scripted_cases import scripted_case_provider

SUITE = Path(__file__).resolve().parents[1] / "examples" / "suite"


class Clock:
    """A CaseWatch noting when each case was handed over and when its result came back."""

    def __init__(self) -> None:
        self.handed: dict[str, float] = {}
        self.back: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        self.lock = threading.Lock()

    def starting(self, job: CaseJob) -> bool:
        with self.lock:
            self.handed[job.case.name] = time.monotonic()
        return True

    def event(self, name: str, event: Any) -> None:
        pass

    def control(self, name: str, control: Any) -> None:
        pass

    def placed(self, name: str, node: str) -> None:
        with self.lock:
            self.nodes[name] = node

    def finished(self, result: CaseResult) -> None:
        with self.lock:
            self.back[result.name] = time.monotonic()


def run_once(workspaces: Path, parallel: int, executor: CaseExecutor, label: str) -> dict[str, Any]:
    clock = Clock()
    report: EvalReport = EvalRun.start(EvalOptions(suite=SUITE), workspaces, parallel, label).execute(executor, clock)
    overhead = {c.name: clock.back[c.name] - clock.handed[c.name] - c.wall_s for c in report.cases}
    return {
        "executor": label,
        "parallel": parallel,
        "wall_s": round(report.wall_s, 2),
        "cases_per_minute": round(60 * len(report.cases) / report.wall_s, 2),
        "overhead_per_case_s": {"mean": round(statistics.mean(overhead.values()), 3),
                                "max": round(max(overhead.values()), 3),
                                "by_case": {k: round(v, 3) for k, v in overhead.items()}},
        "nodes": sorted(set(clock.nodes.values())),
        "scores": {c.name: [c.status, c.acceptance_passed, c.acceptance_total, c.solved] for c in report.cases},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="simulated seconds per model call")
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes of the local cluster")
    parser.add_argument("--slots", type=int, default=1, help="`docker` slots (cases at once) per worker node")
    parser.add_argument("--parallel", type=int, default=None, help="cases at once, in both evals (default: all slots)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/eval_ray.json"))
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    provider = scripted_case_provider(args.latency)
    parallel = args.parallel or args.nodes * args.slots

    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=1, resources={"docker": args.slots})
    cluster_start_s = time.monotonic() - started
    try:
        with tempfile.TemporaryDirectory(prefix="macrohard-bench-eval-ray-") as tmp:
            local = run_once(Path(tmp) / "local", parallel, LocalExecutor(parallel, lambda s: provider), "local")
            ray_executor = RayExecutor(cluster.address, parallel)
            ray_executor.connect()
            on_ray = run_once(Path(tmp) / "ray", parallel, ray_executor, "ray")
            ray_executor.close()
    finally:
        cluster.shutdown()

    same = local["scores"] == on_ray["scores"]
    added = round(on_ray["overhead_per_case_s"]["mean"] - local["overhead_per_case_s"]["mean"], 3)
    out = {"latency_s": args.latency, "suite": str(SUITE), "nodes": args.nodes, "slots_per_node": args.slots,
           "cluster_start_s": round(cluster_start_s, 2), "results": [local, on_ray],
           "ray_overhead_per_case_s": added, "checks": {"same per-case scores": same}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    console = Console()
    table = Table(title=f"examples/suite: {len(local['scores'])} cases, {args.latency}s per model call, "
                        f"{parallel} at once", title_justify="left")
    for col in ("executor", "wall s", "cases/min", "overhead/case s", "max s", "nodes"):
        table.add_column(col, justify="right")
    for r in (local, on_ray):
        o = r["overhead_per_case_s"]
        table.add_row(r["executor"], str(r["wall_s"]), str(r["cases_per_minute"]), str(o["mean"]), str(o["max"]),
                      str(len(r["nodes"]) or "-"))
    console.print(table)
    console.print(f"Ray adds {added}s per case; the local cluster took {out['cluster_start_s']}s to start")
    console.print(f"{'ok    ' if same else 'FAILED'}  same per-case scores")
    console.print(f"written to {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
