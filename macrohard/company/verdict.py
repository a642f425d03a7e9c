"""The orchestrator's verdict: a test run no role configures, in a sandbox no role used.

Each verdict exports a commit's tree (read from git's objects, so nothing in the
worktree and no filter is involved) into a folder of its own, and runs the configured
test command in a fresh sandbox that mounts the tree read-only: the code under test
cannot rewrite itself, its tests, or anything that is later committed or tagged. The
runner writes a JUnit XML report into the one writable mount; a pass needs that
report, at least one test, no failure or error, exit code 0, and every test that
passed in the verdict this one builds on still passing (none skipped, deselected or
missing).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import stat
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from macrohard.company.environment import PackagesUnavailable, ProductEnvironment
from macrohard.company.sandboxes import RunSandboxes
from macrohard.config import Settings
from macrohard.models import TestReport
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace
from macrohard.workspace.tree import empty_folder, remove_folder

REPORT = "junit.xml"
BASELINE = "baseline.json"  # the suite at the run's base, in the verdicts folder
EXTRA_DIR = "macrohard_acceptance"  # where hidden acceptance tests go in the tested tree
MAX_REPORT_BYTES = 32 * 2**20
FAILURE_TAIL_CHARS = 3000
ORCHESTRATOR = "orchestrator"


class JUnit(BaseModel):
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    passed_ids: list[str] = []
    failed_ids: list[str] = []  # failures and errors with a name
    unnamed_errors: int = 0  # cases without a name: a run cut short


def parse_junit(path: Path) -> JUnit | None:
    """The counts and passing test ids of a JUnit XML report; None when there is no readable one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        return None
    try:
        # expat (2.4.1 and later) refuses entity expansion attacks.
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    report = JUnit()
    for case in root.iter("testcase"):
        report.tests += 1
        outcome = {child.tag for child in case}
        case_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if not case.get("name"):  # a nameless case: a run cut short
            report.errors += 1
            report.unnamed_errors += 1
        elif "error" in outcome:
            report.errors += 1
            report.failed_ids.append(case_id)
        elif "failure" in outcome:
            report.failures += 1
            report.failed_ids.append(case_id)
        elif "skipped" in outcome:
            report.skipped += 1
        else:
            report.passed_ids.append(case_id)
    report.passed_ids.sort()
    report.failed_ids.sort()
    return report


def judge(
    exit_code: int, timed_out: bool, junit: JUnit | None, expect: set[str], tolerated: Mapping[str, int] | None = None
) -> tuple[bool, list[str], str]:
    """(passed, tests missing from expect, why not) for one run.

    `tolerated` are tests that already failed at the run's base (a user's repository may
    have some), with how many times each id failed there: they may go on failing as often,
    and nothing else may (a new test given a tolerated test's id is one failure too many).
    """
    if timed_out:
        return False, [], "the test run timed out"
    if junit is None:
        return False, [], f"the test run ended (exit code {exit_code}) without writing its report"
    missing = sorted(expect - set(junit.passed_ids))
    if junit.tests == 0:
        return False, missing, "no test ran"
    failing = Counter(junit.failed_ids)
    known = sum(min(n, (tolerated or {}).get(i, 0)) for i, n in failing.items())
    if junit.failures + junit.errors > known:
        also = f" ({known} of them already failing at the run's base)" if known else ""
        return False, missing, f"{junit.failures} failed and {junit.errors} errors of {junit.tests} tests{also}"
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return False, missing, f"tests that passed before did not pass now (skipped, deselected or missing): {shown}"
    # With known failures only, the runner's exit code says tests failed: that is expected.
    if exit_code != 0 and not known:
        return False, missing, f"the test command exited {exit_code} although its report shows no failure"
    return True, missing, ""


def base_id(test_id: str) -> str:
    """A test's id without its parameters: `test_x[True]` and `test_x[False]` are one test."""
    return test_id.split("[", 1)[0]


def missing_acceptance(folder: Path, passed_ids: Iterable[str]) -> list[str]:
    """Acceptance test functions (read from the files, which no role can change) that did not pass.

    A run cut short (pytest.exit from product code), a deselection or a skip leaves some
    out; the report alone cannot show what never ran.
    """
    passed = {base_id(i).rsplit("::", 1)[-1] for i in passed_ids if i.startswith(EXTRA_DIR)}
    defined: set[str] = set()
    for path in sorted(folder.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        defined |= {n.name for n in ast.walk(tree)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")}
    return sorted(defined - passed)


class Verdicts:
    """Runs verdicts for the company; remembers which tests passed on each main commit."""

    def __init__(
        self, settings: Settings, workspace: GitWorkspace, sandboxes: RunSandboxes, transcript: TranscriptLog,
        is_test_file: Callable[[str], bool], environment: ProductEnvironment,
    ) -> None:
        self.settings = settings
        self.environment = environment  # the stack's test command and image, the commit's packages
        self.workspace = workspace
        self.sandboxes = sandboxes
        self.transcript = transcript
        self.is_test_file = is_test_file
        self.folder = workspace.run_dir / "verdicts"
        self._prepared: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._main_lock = threading.Lock()
        # Tests that already failed at the run's base, and how often: not blamed on any ticket (see baseline()).
        self.tolerated: dict[str, int] = self._recorded_baseline()

    def prepare(self, key: str, *, ahead: bool = False, runs: int = 1) -> None:
        """Start a verdict's sandbox ahead of time, on a folder still empty (it is filled at run()),
        with the test command started and waiting there, once per run it will have (two for
        run_then_base), when it can be (settings.warm_tests).
        `ahead`: for a verdict of a later step, so it waits while other verdicts run."""
        with self._lock:
            if key in self._prepared:
                return
            folder = self._prepared[key] = self._new_folder(key)
        warm = self._command if self.settings.warm_tests_for(self.environment.stack) else None
        self.sandboxes.prepare(key, folder / "tree", read_only=True, output_dir=folder / "output", warm=warm,
                               warm_runs=runs, extras=self.environment.verdict_extras(folder / "deps"), ahead=ahead)

    def _command(self, output_path: str) -> str:
        """The test command as it runs in a sandbox whose output folder is output_path."""
        command = self.settings.test_command_for(self.environment.stack)
        return command.replace("{report}", shlex.quote(f"{output_path}/{REPORT}"))

    def run(
        self,
        key: str,
        ref: str,
        *,
        ticket: str | None,
        expect: Iterable[str] = (),
        layers: Iterable[tuple[str, Callable[[str], bool]]] = (),
        exclude: Callable[[str], bool] | None = None,
        extra: Path | None = None,
    ) -> TestReport:
        """Test ref's tree: without what exclude picks, with the files each layer picks from
        its own ref instead, and with the folder extra copied in (hidden acceptance tests)."""
        with self._session(key) as folder:
            return self._test(key, folder, ref, ticket=ticket, expect=expect, layers=layers, exclude=exclude, extra=extra)

    def run_then_base(
        self, key: str, ref: str, base: str, *, ticket: str, expect: Iterable[str],
        base_layers: Iterable[tuple[str, Callable[[str], bool]]],
    ) -> tuple[TestReport, TestReport | None]:
        """The verdict on ref; when it passes, the same tests on base (with base_layers) in the same sandbox.

        The second run only ever tells whether the ticket's tests fail without its change,
        and it starts after the verdict has been read: the ticket's code, which ran in this
        sandbox first, can change nothing but that answer, and it can make its tests fail
        on base by itself anyway (a test may look for a file only the ticket adds). So the
        check needs no sandbox of its own: one container per verdict, not two.
        """
        with self._session(key) as folder:
            report = self._test(key, folder, ref, ticket=ticket, expect=expect)
            if not report.passed:
                return report, None
            self._reset(key, folder)
            return report, self._test(key, folder, base, ticket=ticket, layers=base_layers)

    @contextmanager
    def _session(self, key: str) -> Iterator[Path]:
        """The folder of key's verdict (prepared, or new); its sandbox is released and the folder removed after."""
        with self._lock:
            folder = self._prepared.pop(key, None)
        if folder is None:
            folder = self._new_folder(key)
        try:
            # The run's critical path: sandboxes starting ahead and stopping wait meanwhile.
            with self.sandboxes.urgent():
                yield folder
        finally:
            # Stopped once the next model calls start, not beside the verdicts still running.
            self.sandboxes.release(key, later=True)
            remove_folder(folder)  # the report folder was the sandbox's to write: any depth, no link followed

    def _reset(self, key: str, folder: Path) -> None:
        """Ready key's sandbox for another run: nothing of the last one left running (but the
        test command still waiting, warmed for this run at prepare()), its tree and report gone.

        The report folder is not walked: the waiting command's process group is spared, and
        the first run's code can reach it (its input, or ptrace, through /proc: it is the same
        user's), so something of that run may still be writing there, moving folders under a
        walk. Only the report goes, by its name in the folder: a report the second run does not
        write is then missing, not the first run's."""
        self.sandboxes.end_processes(key, keep_warm=True)
        empty_folder(folder / "tree")  # the host's own export, read-only in the sandbox
        fd = os.open(folder / "output", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.unlink(REPORT, dir_fd=fd)
        except OSError:
            pass  # none, or a folder by that name: parse_junit() reads no report from it either way
        finally:
            os.close(fd)

    def _test(
        self, key: str, folder: Path, ref: str, *, ticket: str | None, expect: Iterable[str] = (),
        layers: Iterable[tuple[str, Callable[[str], bool]]] = (), exclude: Callable[[str], bool] | None = None,
        extra: Path | None = None,
    ) -> TestReport:
        tree, output = folder / "tree", folder / "output"
        sha = self.workspace.head(ref)
        layers = list(layers)
        # The base tree without what the layers bring, then each layer's files from its own ref.
        picks = [pick for _, pick in layers] + ([exclude] if exclude else [])
        self.workspace.export(sha, tree, (lambda p: not any(pick(p) for pick in picks)) if picks else None)
        for layer_ref, pick in layers:
            self.workspace.export(layer_ref, tree, pick)
        if extra is not None:
            # Links are copied as links: the sandbox resolves them, never the host.
            shutil.copytree(extra, tree / EXTRA_DIR, symlinks=True)
        try:
            # The packages the commit's own manifest declares, read from git's objects.
            self.environment.fill_commit(sha, folder / "deps")
        except PackagesUnavailable as e:
            return self._unavailable(ticket, sha, str(e))
        self.sandboxes.prepare(key, tree, read_only=True, output_dir=output,
                               extras=self.environment.verdict_extras(folder / "deps"))
        command = self._command(self.sandboxes.output_path(key))
        result, event_id = self.sandboxes.exec(key, tree, command, role=ORCHESTRATOR)
        junit = parse_junit(output / REPORT)
        passed, missing, reason = judge(result.exit_code, result.timed_out, junit, set(expect), self.tolerated)
        return TestReport(
            ticket=ticket, command=command, exit_code=result.exit_code, passed=passed, duration_s=result.duration_s,
            output_tail=result.tail(FAILURE_TAIL_CHARS), timed_out=result.timed_out, event_id=event_id, sha=sha,
            report_found=junit is not None, missing=missing, reason=reason,
            **(junit.model_dump(exclude={"unnamed_errors"}) if junit else {}),
        )

    def _unavailable(self, ticket: str | None, sha: str, why: str) -> TestReport:
        reason = f"the product's packages cannot be installed, so its tests did not run: {why}"
        self.transcript.append("verdict.refused", ticket=ticket, sha=sha, reason=reason)
        return TestReport(ticket=ticket, command="", exit_code=-1, passed=False, duration_s=0.0, output_tail=reason,
                          sha=sha, reason=reason)

    def discard(self, key: str) -> None:
        """Drop a prepared verdict that will not run."""
        with self._lock:
            folder = self._prepared.pop(key, None)
        if folder is not None:
            self.sandboxes.release(key)
            remove_folder(folder)  # the report folder was the sandbox's to write: any depth, no link followed

    def close(self) -> None:
        """Drop every prepared verdict (the run is over)."""
        with self._lock:
            keys = list(self._prepared)
        for key in keys:
            self.discard(key)

    def main_passing(self, sha: str) -> set[str]:
        """The tests that passed on this main commit: what no later verdict may lose."""
        cache = self.folder / f"main-{sha}.json"
        # Parallel tickets may ask at once; one verdict on main runs at a time (they share its key).
        with self._main_lock:
            try:
                return set(json.loads(cache.read_text()))
            except (OSError, ValueError):
                pass
            if not any(self.is_test_file(p) for p in self.workspace.tree_files(sha)):
                ids: list[str] = []
            else:
                ids = self.run("verdict:main", sha, ticket=None).passed_ids
            self.remember(sha, ids)
            return set(ids)

    def baseline(self, sha: str) -> TestReport:
        """The suite at the run's base (a user's repository): which tests pass, which already fail.

        Those that fail here are not blamed on a ticket: later verdicts tolerate them failing
        (and a ticket that fixes one has a test that fails without it).
        """
        report = self.run("verdict:main", sha, ticket=None)
        self.remember(sha, report.passed_ids)
        failed = sorted(report.failed_ids)
        self.tolerated = dict(Counter(failed))
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / BASELINE).write_text(json.dumps({"sha": sha, "passed": report.passed_ids, "failed": failed}))
        return report

    def _recorded_baseline(self) -> dict[str, int]:
        try:
            return dict(Counter(json.loads((self.folder / BASELINE).read_text())["failed"]))
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def remember(self, sha: str, passed_ids: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"main-{sha}.json").write_text(json.dumps(sorted(passed_ids)))

    def _new_folder(self, key: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=key.replace(":", "-") + "-", dir=self.folder))
        for part in ("tree", "output", "deps"):
            (folder / part).mkdir()
        return folder
