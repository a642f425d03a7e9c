"""The release's nodes: the deployer, the release (final suite and hidden acceptance tests,
beside them the product's image and its smoke check; then the tag) and the report. A mixin of Company
(company/graph.py), which provides what they use; the image and the smoke check are in
company/deploy.py.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from macrohard.company import prompts
from macrohard.company.deploy import ShipStage, release_context
from macrohard.company.state import CompanyState
from macrohard.company.acceptance import ACCEPTANCE_HIDES, canary_name, judged, unsupported, write_canary
from macrohard.company.verdict import EXTRA_DIR
from macrohard.deploy.product import image_version, product_name
from macrohard.deploy.versions import ReleaseBase, release_base
from macrohard.models import Release, RunSpec, Ticket, TicketStatus
from macrohard.workspace.provenance import MAIN



class ReleaseStage(ShipStage):

    def _release_base(self, state: CompanyState) -> ReleaseBase:
        """The version this run releases (chosen once, from the repository's tags) and what changed since the last."""
        return release_base(self.workspace, MAIN, state.get("version") or None)

    def _image_name(self, version: str) -> str:
        return f"{product_name(self.spec.title)}:{image_version(version)}"

    def _run_spec(self, state: CompanyState) -> RunSpec:
        """How the released product is checked: the plan's way, or the stack's default for a partial release.

        The plan's smoke command is for the whole product; when some tickets did not land,
        what was merged is released and checked by the stack's default (imports) instead.
        """
        planned = state.get("run_spec") or RunSpec(default=True)
        if all(t.status == TicketStatus.MERGED for t in state.get("tickets", {}).values()):
            return planned
        return RunSpec(stack=planned.stack, default=True)

    def deployer(self, state: CompanyState) -> CompanyState:
        attempt = state.get("release_attempt", 0) + 1
        self._node("deployer", attempt=attempt)
        self.sandboxes.flush()  # the deployer's model calls leave the CPU room to stop them
        try:  # and they are all that runs: what waits (see judge()) goes once the first is under way
            # What was integrated: the final verdict may lose no test that passed here.
            integrated = state.get("integrated_sha") or self.workspace.head()
            if self._already_done("deployer", MAIN, None, attempt):
                return {"release_attempt": attempt, "rejected": False, "integrated_sha": integrated,
                        "version": self._release_base(state).version, "ship_failure": ""}
            tickets = sorted(state.get("tickets", {}).values(), key=_order)
            merged = [t for t in tickets if t.status == TicketStatus.MERGED]
            unfinished = [t for t in tickets if t.status != TicketStatus.MERGED]
            root = self.workspace.repo_dir
            feedback = state.get("feedback") if state.get("rejected") else None
            base = self._release_base(state)
            version = base.version
            prompt = prompts.release_prompt(version, merged, unfinished, feedback) + "\n\n" + release_context(
                self._image_name(version), base, self._run_spec(state),
                (root / "Dockerfile").is_file(), state.get("ship_failure") or None,
            )
        finally:
            self.sandboxes.calling(None)
        result = self._agent("deployer", self._file_tools(root, "deployer"), "release", prompt, attempt=attempt)
        self._commit(root, "deployer", f"Release notes for {version}", result, None, attempt)
        # The last release attempt's failure was told to this session: a later one is told only what comes next.
        return {"release_attempt": attempt, "rejected": False, "integrated_sha": integrated, "version": version,
                "ship_failure": ""}

    def release(self, state: CompanyState) -> CompanyState:
        """Tag the exact commit whose final verdict (and hidden acceptance tests) passed and whose image passed its
        smoke check; otherwise no tag (a failed image goes back to the deployer while it has attempts left)."""
        event_id = self._node("release")
        sha = self.workspace.head()
        base = self._release_base(state)
        version = base.version
        # The image is built from sha's objects and checked in a sandbox of its own, so it is made
        # beside the final suite and the acceptance tests on the same commit instead of after them:
        # the tag below still needs all three to pass. An image of a commit that fails is not tagged.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ship") as pool:
            shipping = pool.submit(self._ship, self._run_spec(state), sha, version)
            final = self._main_verdict(state.get("integrated_sha") or sha, None, prepare_next=False)
            self.transcript.append("final.suite", **final.model_dump(exclude={"output_tail", "ticket"}))
            accepted, total, failure = self._acceptance(sha) if final.passed else (None, None, None)
            shipped = shipping.result()
        if final.sha != sha:  # what the image and the acceptance tests were made of must be what the suite tested
            return {"status": "failed", "failure": f"no release: the final suite tested {str(final.sha)[:12]}, "
                                                   f"not {sha[:12]}, the commit to tag"}
        if not final.passed:
            return {"status": "failed", "failure": f"no release: the final suite failed on {sha[:12]}: {final.reason}"}
        if failure and not self.settings.acceptance_tags_anyway:
            return {"status": "failed", "failure": f"no release: {failure}"}
        if not shipped.passed:
            failures = state.get("ship_failures", 0) + 1
            if shipped.retry and failures < self.settings.max_attempts:
                # Back to the deployer, with the reason and the output, as its next attempt.
                return {"ship_failure": shipped.feedback, "ship_failures": failures, "version": version}
            return {"status": "failed", "failure": f"no release: {shipped.failure}", "ship_failures": failures,
                    "ship_failure": ""}
        head = self.transcript.head
        # The tag also anchors the transcript in git, apart from the run folder, and names what was checked.
        anchor = f"\n\nTranscript head: {head.seq} {head.hash}" if head else ""
        smoke = shipped.smoke
        checked = f"\nSmoke check: `{smoke.command}` ({smoke.kind}) passed" if smoke else ""
        # What third-party code the release holds, beside the product's own.
        packages = "".join(f"\nPackage: {p.name} {p.version} sha256:{p.sha256}" for p in shipped.packages)
        tagged = self.workspace.tag(
            version, f"Release {version}\n\nImage: {shipped.image} {shipped.image_id}{checked}{packages}{anchor}",
            self._prov("deployer", event_id), ref=sha,
        )
        self.transcript.append("git.tag", role="deployer", tag=version, sha=tagged, cause=event_id,
                               image=shipped.image, image_id=shipped.image_id, stack=self.environment.stack.name,
                               packages=[p.model_dump() for p in shipped.packages])
        notes = "RELEASE_NOTES.md" if (self.workspace.repo_dir / "RELEASE_NOTES.md").is_file() else ""
        release = Release(
            tag=version, sha=tagged, notes_path=notes, suite_tests=final.tests,
            acceptance_passed=accepted, acceptance_total=total, previous_tag=base.previous,
            image=shipped.image, image_id=shipped.image_id, dockerfile=shipped.dockerfile, smoke=shipped.smoke,
            stack=self.environment.stack.name, packages=shipped.packages,
        )
        return {"release": release, "ship_failure": "", "version": version, **({"failure": failure} if failure else {})}

    def _acceptance(self, sha: str) -> tuple[int | None, int | None, str | None]:
        """(passed, total, why they failed) of the hidden acceptance tests on sha; Nones without any."""
        folder = self.settings.acceptance
        if folder is None:
            return None, None, None
        refused = unsupported(sha, self.environment.stack.name)
        if refused is not None:
            self.transcript.append("acceptance", **{k: v for k, v in refused.items() if k != "passed_ids"})
            return 0, 0, refused["reason"]
        canary = canary_name()
        with tempfile.TemporaryDirectory(prefix="macrohard-acceptance-") as tmp:
            extra = Path(tmp) / "acceptance"
            shutil.copytree(folder, extra, symlinks=True)
            write_canary(extra, canary)
            # The product's code only: no test file or runner configuration a role wrote.
            # Without any file that configures the runner: not the tester's, nor pyproject.toml's or
            # setup.cfg's sections (which a parser difference or a link could hide from the guard).
            report = self.verdicts.run(
                "acceptance:main", sha, ticket=None, extra=extra,
                exclude=lambda p: self.guard.is_test_file(p) or p in ACCEPTANCE_HIDES or p.split("/", 1)[0] == EXTRA_DIR,
            )
        result = judged(report, canary, folder)
        self.transcript.append("acceptance", **{k: v for k, v in result.items() if k != "passed_ids"})
        passed = len(result["passed_ids"])
        why = None if result["passed"] else (
            f"hidden acceptance tests failed ({passed} of {result['tests']} passed): {result['reason']}"
        )
        return passed, result["tests"], why

    def report(self, state: CompanyState) -> CompanyState:
        tickets = state.get("tickets", {}).values()
        failure = state.get("failure")
        if state.get("status") == "failed":
            status = "failed"
        elif tickets and all(t.status == TicketStatus.MERGED for t in tickets):
            status = "done"
        elif any(t.status == TicketStatus.MERGED for t in tickets):
            status = "partial"
        else:
            status = "failed"
            failure = "no ticket landed: " + "; ".join(
                f"{t.id} {t.status.value}" + (f" ({t.failure_reason})" if t.failure_reason else "")
                for t in sorted(tickets, key=_order)
            )
        self.verdicts.close()
        release = state.get("release")
        # The sandboxes stop while the result is handed back (git's objects and the transcript
        # only); the run finishes once both are done.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="close") as pool:
            closing = pool.submit(self.sandboxes.close)
            self._hand_back(sorted(tickets, key=_order), status, release.tag if release else None)
            closing.result()
        self.transcript.append(
            "run.finished", status=status, failure=failure,
            release=release.model_dump() if release else None,
            tickets={t.id: t.status.value for t in tickets},
        )
        return {"status": status, **({"failure": failure} if failure else {})}


def _order(t: Ticket) -> tuple[int, str]:
    number = t.id.rsplit("-", 1)[-1]
    return (int(number) if number.isdigit() else 0, t.id)
