"""How much a parallel company saves: wall time at max_parallel 1, 2 and 4, in one run.

A generated spec of 8 independent tickets and 2 pairs of dependent ones runs on the
scripted model with a simulated latency per model call; everything else is real
(LangGraph, git, the Docker sandbox, pytest). Also measured: orchestration overhead
(wall time minus the time in which a model call or a sandbox operation was under way,
at max_parallel 1) per ticket, and
the prompt tokens of the first and the last ticket's first engineer call.

    python3 bench/parallel.py [--latency 1.0] [--parallel 1 2 4] [--out bench/results/parallel.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.sandbox.docker import DockerSandboxProvider, docker_client
from macrohard.sandbox.image import build_image, image_exists
from macrohard.transcript.audit import build_report
from macrohard.transcript.log import read_events

INDEPENDENT = 8
PAIRS = 2


def tickets() -> list[dict[str, object]]:
    """Ticket n adds pkg/mod_n.py; the second of each pair builds on the first."""
    out: list[dict[str, object]] = []
    for n in range(1, INDEPENDENT + 2 * PAIRS + 1):
        base = n - 1 if n > INDEPENDENT and (n - INDEPENDENT) % 2 == 0 else None
        out.append(
            {
                "n": n,
                "base": base,
                "title": f"Function f_{n}",
                "description": f"Create pkg/mod_{n}.py with f_{n}(x) returning "
                + (f"f_{base}(x) + {n}." if base else f"x + {n}."),
                "acceptance_criteria": [f"f_{n}(0) == {n + (base or 0) + sum(range(0))}"],
                "depends_on": [f"T-{base}"] if base else [],
            }
        )
    return out


def expected(t: dict[str, object], all_: list[dict[str, object]]) -> int:
    base = t["base"]
    return int(t["n"]) + (expected(all_[int(base) - 1], all_) if base else 0)  # type: ignore[arg-type]


def module_source(t: dict[str, object]) -> str:
    n, base = t["n"], t["base"]
    if base:
        return f"from pkg.mod_{base} import f_{base}\n\n\ndef f_{n}(x):\n    return f_{base}(x) + {n}\n"
    return f"def f_{n}(x):\n    return x + {n}\n"


def script(ts: list[dict[str, object]]) -> dict[str, object]:
    plan = [
        {"calls": [{"write_file": {"path": "docs/PRD.md", "content": "# pkg\n\nSmall functions f_n.\n"}}]},
        {"calls": [{"add_ticket": {k: t[k] for k in ("title", "description", "acceptance_criteria", "depends_on")}} for t in ts]},
        {"say": "Planned."},
    ]
    engineer, tester = {}, {}
    for t in ts:
        n = t["n"]
        init = [{"write_file": {"path": "pkg/__init__.py", "content": ""}}]
        engineer[f"T-{n}"] = [
            {"calls": init + [{"write_file": {"path": f"pkg/mod_{n}.py", "content": module_source(t)}}]},
            {"say": f"Added f_{n}."},
        ]
        test = f"from pkg.mod_{n} import f_{n}\n\n\ndef test_f_{n}():\n    assert f_{n}(0) == {expected(t, ts)}\n"
        tester[f"T-{n}"] = [
            {"calls": [{"write_file": {"path": f"tests/test_mod_{n}.py", "content": test}}]},
            {"say": f"f_{n} is tested."},
        ]
    release = [{"calls": [{"write_file": {"path": "RELEASE_NOTES.md", "content": "# v0.1.0\n"}}]}, {"say": "Done."}]
    return {"product_manager": {"plan": plan}, "engineer": engineer, "tester": tester, "deployer": {"release": release}}


# The release's image build and smoke run are Docker work too (each event holds its duration):
# a fixed cost per run, not orchestration per ticket.
RELEASE_WORK = ("image.build", "smoke")
SANDBOX_WORK = ("sandbox.exec", "sandbox.start", "sandbox.stop", *RELEASE_WORK)


def busy_s(events: list, sandbox_kinds: tuple[str, ...] = SANDBOX_WORK) -> float:
    """Seconds in which a model call or a sandbox operation was under way (their union).

    Sandboxes start while model calls are in flight, so summing the two would count
    the overlap twice; what is left of the wall time after the union is orchestration.
    """
    intervals = []
    requests: dict[tuple[object, ...], float] = {}
    for e in events:
        key = (e.role, e.ticket, e.data.get("task"), e.data.get("step"))
        if e.kind == "model.request":
            requests[key] = e.ts
        elif e.kind == "model.response" and key in requests:
            intervals.append((requests.pop(key), e.ts))
        elif e.kind in sandbox_kinds:
            intervals.append((e.ts - float(e.data.get("duration_s", 0.0)), e.ts))
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def run_once(folder: Path, parallel: int, latency: float, provider: DockerSandboxProvider) -> dict[str, object]:
    ts = tickets()
    (folder / "spec.md").write_text("# pkg\n\nA package of small functions f_1 ... f_12.\n")
    (folder / "script.yaml").write_text(yaml.safe_dump(script(ts), sort_keys=False))
    settings = Settings(
        workspaces=folder / "ws", roles_dir=resource_dir("roles"), max_parallel=parallel, scripted_latency_s=latency
    )
    run = CompanyRun.create(folder / "spec.md", settings, script=folder / "script.yaml")
    started = time.perf_counter()
    summary = run.execute(provider)
    wall = time.perf_counter() - started
    events = list(read_events(run.paths.transcript))
    report = build_report(events)
    if summary.status != "done":
        raise SystemExit(f"max_parallel={parallel}: the run ended {summary.status}: {summary.failure}")
    first_calls = [
        e for e in events if e.kind == "model.response" and e.role == "engineer" and e.data.get("step") == 1
    ]
    return {
        "max_parallel": parallel,
        "wall_s": round(wall, 3),
        "model_latency_s": round(report.totals.model_latency_s, 3),
        "sandbox_s": round(report.totals.sandbox_s, 3),
        "overhead_s": round(wall - busy_s(events), 3),
        # Stricter: containers start and stop in the background, and orchestration done
        # meanwhile is hidden by the union above. Here only commands count as sandbox time.
        "overhead_outside_calls_and_commands_s": round(wall - busy_s(events, ("sandbox.exec", *RELEASE_WORK)), 3),
        # The release's image: built from the tagged commit after the deployer's notes, serial at any max_parallel.
        "release_image_s": round(sum(float(e.data.get("duration_s") or 0) for e in events if e.kind in RELEASE_WORK), 3),
        "tickets": len(ts),
        "model_calls": report.totals.model_calls,
        "first_engineer_prompt_tokens": first_calls[0].data["usage"]["prompt_tokens"],
        "last_engineer_prompt_tokens": first_calls[-1].data["usage"]["prompt_tokens"],
        "first_ticket": first_calls[0].ticket,
        "last_ticket": first_calls[-1].ticket,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="simulated seconds per model call")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=Path("bench/results/parallel.json"))
    args = parser.parse_args()

    client = docker_client()
    settings = Settings()
    if not image_exists(client, settings.sandbox.image):
        build_image(client, settings.sandbox.image)
    provider = DockerSandboxProvider(settings.sandbox, client)
    results = []
    with tempfile.TemporaryDirectory(prefix="macrohard-bench-") as tmp:
        for i, p in enumerate(args.parallel):
            folder = Path(tmp) / f"{i}-p{p}"  # a setting may be asked for twice (--parallel 4 4)
            folder.mkdir()
            results.append(run_once(folder, p, args.latency, provider))

    serial = next((r for r in results if r["max_parallel"] == 1), results[0])
    for r in results:
        r["ratio_to_serial"] = round(float(r["wall_s"]) / float(serial["wall_s"]), 3)
        # The same without the release's image build and smoke run, which no max_parallel can shorten.
        r["ratio_without_release_image"] = round(
            (float(r["wall_s"]) - float(r["release_image_s"])) / (float(serial["wall_s"]) - float(serial["release_image_s"])), 3)
    per_ticket_ms = 1000 * float(serial["overhead_s"]) / int(serial["tickets"])
    strict_ms = 1000 * float(serial["overhead_outside_calls_and_commands_s"]) / int(serial["tickets"])
    growth = int(serial["last_engineer_prompt_tokens"]) / int(serial["first_engineer_prompt_tokens"])
    four = next((r for r in results if r["max_parallel"] == 4), None)
    targets = {
        "p4_wall_ratio <= 0.35": (four["ratio_to_serial"] if four else None, bool(four and four["ratio_to_serial"] <= 0.35)),
        "overhead_ms_per_ticket <= 100": (round(per_ticket_ms, 1), per_ticket_ms <= 100),
        "last/first engineer prompt <= 1.2": (round(growth, 3), growth <= 1.2),
    }
    out = {
        "latency_s": args.latency,
        "results": results,
        "overhead_ms_per_ticket_at_p1": round(per_ticket_ms, 1),
        "overhead_outside_calls_and_commands_ms_per_ticket_at_p1": round(strict_ms, 1),
        "prompt_growth_last_over_first": round(growth, 3),
        "targets": {k: {"value": v, "met": met} for k, (v, met) in targets.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    console = Console()
    table = Table(title=f"{len(tickets())} tickets, {args.latency}s per model call", title_justify="left")
    for col in ("max_parallel", "wall s", "x serial", "model s", "sandbox s", "overhead s", "calls"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(*(str(r[k]) for k in ("max_parallel", "wall_s", "ratio_to_serial", "model_latency_s", "sandbox_s", "overhead_s", "model_calls")))
    console.print(table)
    for name, (value, met) in targets.items():
        console.print(f"{'met ' if met else 'MISSED'}  {name}: {value}")
    console.print(f"      overhead outside model calls and sandbox commands: {strict_ms:.1f} ms per ticket")
    if four:
        console.print(f"      p4/p1 without the release's image build and smoke run ({four['release_image_s']}s at p4): "
                      f"{four['ratio_without_release_image']}")
    console.print(f"written to {args.out}")
    return 0 if all(met for _, met in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
