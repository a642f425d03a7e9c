"""What a hardened sandbox costs, in one run.

    (a) start: a hardened container started until its first command answers
    (b) exec through our sandbox: a trivial command (`true`) through DockerSandbox.exec
    (c) exec through the `docker exec` command line, same container, user and command
    (d) a plain local subprocess running `true`
    (e) one `docker exec` per command through the SDK: the floor of the design the
        runner replaced (create, start and inspect an exec of `sh -c true`)

Prints median, p10, p90, min and max of each, the ratio (b)/(c) and each target's
verdict, and writes them to a JSON file.

    python3 bench/sandbox.py [--runs 50] [--starts 10] [--out bench/results/sandbox.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from macrohard.config import SandboxSettings
from macrohard.sandbox.docker import WORKSPACE, DockerSandbox, DockerSandboxProvider, docker_client
from macrohard.sandbox.image import build_image, image_exists

LABELS = {"macrohard.bench": f"sandbox-{uuid.uuid4().hex[:8]}"}


class Stats(BaseModel):
    name: str
    runs: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, name: str, seconds: list[float]) -> Stats:
        ms = sorted(s * 1000 for s in seconds)
        deciles = statistics.quantiles(ms, n=10, method="inclusive")
        return cls(
            name=name, runs=len(ms), median_ms=statistics.median(ms), p10_ms=deciles[0],
            p90_ms=deciles[-1], min_ms=ms[0], max_ms=ms[-1],
        )


class Target(BaseModel):
    what: str
    limit: str
    value: str
    met: bool


class Machine(BaseModel):
    cpus: int
    python: str
    kernel: str
    docker: str
    storage_driver: str
    cgroup_version: str


class Report(BaseModel):
    machine: Machine
    settings: SandboxSettings
    results: dict[str, Stats]
    exec_ratio: float  # (b) / (c)
    leftover_containers: int
    targets: list[Target]


def timed(action: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        action()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        out.append(time.perf_counter() - started)
    return out


def measure_starts(provider: DockerSandboxProvider, workdir: Path, starts: int) -> list[float]:
    """(a): start a hardened container until `true` has run in it; removal is not timed."""
    out = []
    for _ in range(starts):
        started = time.perf_counter()
        sandbox = provider.start(workdir, labels=LABELS)
        sandbox.exec("true")
        out.append(time.perf_counter() - started)
        sandbox.stop()
    return out


def sdk_exec(client: docker.DockerClient, sandbox: DockerSandbox) -> None:
    """(e): the previous design, one exec per command, without its time-limit wrapper."""
    exec_id = client.api.exec_create(sandbox.id, ["sh", "-c", "true"], user=sandbox.user, workdir=WORKSPACE)["Id"]
    client.api.exec_start(exec_id)
    client.api.exec_inspect(exec_id)


def machine(client: docker.DockerClient) -> Machine:
    info = client.info()
    return Machine(
        cpus=os.cpu_count() or 0, python=platform.python_version(), kernel=platform.release(),
        docker=str(client.version().get("Version")), storage_driver=str(info.get("Driver")),
        cgroup_version=str(info.get("CgroupVersion", "?")),
    )


def run(runs: int, starts: int) -> Report:
    client = docker_client()
    settings = SandboxSettings()
    if not image_exists(client, settings.image):
        build_image(client, settings.image)
    provider = DockerSandboxProvider(settings, client)
    with tempfile.TemporaryDirectory(prefix="macrohard-bench-") as tmp:
        workdir = Path(tmp)
        try:
            results = {"a": Stats.of("(a) hardened container ready", measure_starts(provider, workdir, starts))}
            with provider.start(workdir, labels=LABELS) as sandbox:
                cli = ["docker", "exec", "-u", sandbox.user, "-w", WORKSPACE, sandbox.id, "true"]
                results["b"] = Stats.of("(b) exec via our sandbox", timed(lambda: sandbox.exec("true"), runs))
                results["c"] = Stats.of("(c) exec via `docker exec` CLI", timed(lambda: subprocess.run(cli, check=True), runs))
                results["d"] = Stats.of("(d) local subprocess", timed(lambda: subprocess.run(["true"], check=True), runs))
                results["e"] = Stats.of("(e) one SDK exec per command", timed(lambda: sdk_exec(client, sandbox), runs))
        finally:
            provider.close()
    leftovers = len(client.api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in LABELS.items()]}))
    ratio = results["b"].median_ms / results["c"].median_ms
    targets = [
        Target(what="(b) exec via our sandbox, median", limit="<= 50 ms",
               value=f"{results['b'].median_ms:.1f} ms", met=results["b"].median_ms <= 50),
        Target(what="(b) / (c), medians", limit="<= 0.5", value=f"{ratio:.3f}", met=ratio <= 0.5),
        Target(what="(a) hardened container ready, median", limit="<= 1.0 s",
               value=f"{results['a'].median_ms / 1000:.2f} s", met=results["a"].median_ms <= 1000),
        Target(what="containers left after the benchmark", limit="0", value=str(leftovers), met=leftovers == 0),
    ]
    return Report(machine=machine(client), settings=settings, results=results, exec_ratio=ratio,
                  leftover_containers=leftovers, targets=targets)


def show(report: Report, console: Console) -> None:
    m = report.machine
    console.print(f"{m.cpus} CPUs, kernel {m.kernel}, Docker {m.docker} ({m.storage_driver}, cgroup v{m.cgroup_version}), "
                  f"Python {m.python}", highlight=False)
    table = Table(title="Sandbox overhead (ms)", title_justify="left", header_style="bold")
    for col in ("", "runs", "median", "p10", "p90", "min", "max"):
        table.add_column(col, justify="left" if not col else "right")
    for s in report.results.values():
        table.add_row(s.name, str(s.runs), *(f"{v:.1f}" for v in (s.median_ms, s.p10_ms, s.p90_ms, s.min_ms, s.max_ms)))
    console.print(table)
    verdicts = Table(title="Targets", title_justify="left", header_style="bold")
    for col in ("target", "limit", "measured", ""):
        verdicts.add_column(col)
    for t in report.targets:
        verdicts.add_row(t.what, t.limit, t.value, "[green]met[/]" if t.met else "[bold red]missed[/]")
    console.print(verdicts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50, help="timed runs of each exec measurement (b-e)")
    parser.add_argument("--starts", type=int, default=10, help="timed container starts (a)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sandbox.json")
    args = parser.parse_args()
    if args.runs < 2 or args.starts < 2:
        parser.error("--runs and --starts need at least 2 for percentiles")
    report = run(args.runs, args.starts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.model_dump_json(indent=2) + "\n")
    console = Console()
    show(report, console)
    console.print(f"written to {args.out}", highlight=False)
    return 0 if all(t.met for t in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
