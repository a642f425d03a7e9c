"""The release's product image and smoke check: a mixin of Company (company/graph.py).

On the exact commit to be tagged, the orchestrator builds `<product>:<version>` from the
commit's tree (read from git's objects) on the sandbox image, offline: with the
deployer's Dockerfile once it passes the safe-subset check (deploy/dockerfile.py), else
the stack's default. Then it runs the image hardened with the plan's smoke command (or
probes a service's health endpoint). A refused Dockerfile, a failed build or a failed
smoke check goes back to the deployer with the reason and the output's tail, as its next
attempt; the transcript has the build log's and the output's tails either way. A resumed
run finds the image it built from that commit and Dockerfile by its labels.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from pydantic import BaseModel

from macrohard.company.environment import PackagesUnavailable
from macrohard.company.parts import CompanyParts
from macrohard.deploy import dockerfile as dockerfiles
from macrohard.deploy.versions import ReleaseBase
from macrohard.deploy.product import (
    NothingToCheck, default_run, deps_labels, identity_labels, image_labels, image_version, product_name,
)
from macrohard.models import Package, RunSpec, SmokeCheck, Spec
from macrohard.sandbox.base import ImageBuild, ProductImages
from macrohard.stacks import DEPS_DIR

LOG_TAIL = 4000  # characters of a build log or smoke output kept in its transcript event
FEEDBACK_TAIL = 2000  # ... and shown to the deployer


class Shipment(BaseModel):
    """The image and its smoke check, or why there is none."""

    image: str  # name:tag
    image_id: str | None = None
    dockerfile: str = "default"
    smoke: SmokeCheck | None = None
    packages: list[Package] = []  # the third-party packages in the image
    failure: str = ""  # one line: why not (empty when it passed)
    feedback: str = ""  # the failure with its log or output tail: the deployer's next attempt
    retry: bool = True  # whether the deployer can do anything about it

    @property
    def passed(self) -> bool:
        return not self.failure


class ShipStage(CompanyParts):
    spec: Spec
    images: ProductImages

    def _ship(self, run_spec: RunSpec, sha: str, version: str) -> Shipment:
        """Build (or find) the image of sha and smoke-check it."""
        image = f"{product_name(self.spec.title)}:{image_version(version)}"
        try:
            run = self._smoke_spec(run_spec, sha)
        except NothingToCheck as e:
            why = (f"{e}, and the plan does not say how the product runs (the product manager's describe_product); "
                   "there is nothing to check the image with")
            self.transcript.append("image.refused", image=image, commit=sha, reason=why)
            return Shipment(image=image, failure=why, feedback=why, retry=False)
        try:
            base, packages = self._product_base(sha)
        except PackagesUnavailable as e:
            self.transcript.append("image.refused", image=image, commit=sha, reason=str(e))
            return Shipment(image=image, failure=f"the product's packages cannot be installed: {e}", retry=False)
        dockerfile = self._dockerfile(sha, run, base, bool(packages))
        if isinstance(dockerfile, str):
            self.transcript.append("image.refused", image=image, commit=sha, reason=dockerfile)
            return Shipment(image=image, dockerfile="Dockerfile", failure=f"the Dockerfile was refused: {dockerfile}",
                            feedback=f"The orchestrator refused your Dockerfile: {dockerfile}")
        labels = image_labels(self.run_id, sha, image_version(version), product_name(self.spec.title), dockerfile.sha256)
        found = self.images.find(identity_labels(labels))
        if found:
            image_id = found[0].id
            self.images.tag(image_id, image)
            self.transcript.append("image.build", image=image, image_id=image_id, commit=sha, reused=True,
                                   dockerfile=dockerfile.source, dockerfile_sha256=dockerfile.sha256)
        else:
            build = self._build(sha, dockerfile.text, image, labels)
            self.transcript.append(
                "image.build", image=image, image_id=build.image_id, commit=sha, reused=False, error=build.error,
                dockerfile=dockerfile.source, dockerfile_sha256=dockerfile.sha256, duration_s=round(build.duration_s, 3),
                log_bytes=build.log_bytes, log_tail=build.log[-LOG_TAIL:],
            )
            if build.image_id is None:
                return Shipment(image=image, dockerfile=dockerfile.source, failure=f"the image {image} did not build: "
                                f"{build.error}", feedback=f"Building the image {image} failed: {build.error}\n\n"
                                f"The build log's tail:\n{build.log[-FEEDBACK_TAIL:]}")
            image_id = build.image_id
        return self._smoke(image, image_id, dockerfile.source, run).model_copy(update={"packages": packages})

    def _product_base(self, sha: str) -> tuple[str, list[Package]]:
        """The image the product's is built on: the stack's sandbox image, with the packages sha's manifest
        declares at /deps (an image of their own, from the orchestrator's cache, reused while they are the same)."""
        stack_image = self.environment.image
        with tempfile.TemporaryDirectory(prefix="deps-", dir=self.workspace.run_dir) as folder:
            packages = self.environment.fill_commit(sha, Path(folder))
            if not packages:
                return stack_image, []
            digest = hashlib.sha256(json.dumps([stack_image, [p.sha256 for p in packages]]).encode()).hexdigest()
            product = product_name(self.spec.title)
            labels = deps_labels(self.run_id, product, digest)
            found = self.images.find(labels)
            if found:
                return found[0].id, packages
            stack = self.environment.stack.name
            build = self.images.build(Path(folder), dockerfiles.packages(stack_image, DEPS_DIR, stack),
                                      tag=f"{product}-packages:{digest[:12]}", labels=labels)
        self.transcript.append("image.build", image=f"{product}-packages:{digest[:12]}", image_id=build.image_id,
                               commit=sha, reused=False, error=build.error, dockerfile="packages",
                               duration_s=round(build.duration_s, 3), log_bytes=build.log_bytes,
                               log_tail=build.log[-LOG_TAIL:])
        if build.image_id is None:
            raise PackagesUnavailable(f"their image did not build: {build.error}")
        return build.image_id, packages

    def _smoke_spec(self, run_spec: RunSpec, sha: str) -> RunSpec:
        """The plan's run spec with its command, or the stack's default check of sha's tree."""
        if run_spec.command:
            return run_spec
        default = default_run(run_spec.stack, self.workspace.tree_files(sha), self.guard.is_test_file)
        return run_spec.model_copy(update={"command": default.command, "default": True})

    def _dockerfile(self, sha: str, run: RunSpec, base: str, has_packages: bool) -> dockerfiles.Dockerfile | str:
        """The checked Dockerfile of sha, or the stack's default without one; or why it was refused."""
        raw = self.workspace.show(sha, "Dockerfile")
        if raw is None:
            return dockerfiles.default(base, run.command, run.port if run.kind == "service" else None,
                                       stack=self.environment.stack.name, deps=DEPS_DIR if has_packages else None)
        own = [path for path in self.workspace.tree_files(sha) if self.guard.allows("deployer", path)]
        try:
            return dockerfiles.check(raw.decode("utf-8"), base, own)
        except UnicodeDecodeError:
            return "it is not UTF-8 text"
        except dockerfiles.DockerfileRefused as e:
            return "; ".join(e.problems)

    def _build(self, sha: str, text: str, image: str, labels: dict[str, str]) -> ImageBuild:
        # The commit's tree from git's objects, as a verdict gets it: nothing a role left in a worktree.
        with tempfile.TemporaryDirectory(prefix="image-", dir=self.workspace.run_dir) as folder:
            context = Path(folder)
            self.workspace.export(sha, context)
            return self.images.build(context, text, tag=image, labels=labels)

    def _smoke(self, image: str, image_id: str, source: str, run: RunSpec) -> Shipment:
        result = self.images.smoke(image_id, run, labels={"macrohard.run": self.run_id},
                                   timeout_s=self.settings.sandbox.timeout_s)
        smoke = SmokeCheck(kind=run.kind, command=run.command, exit_code=result.exit_code, passed=result.passed,
                           timed_out=result.timed_out, health_url=result.health_url, default=run.default,
                           duration_s=round(result.duration_s, 3))
        # `product` for the kind: an event's own kind is the event's.
        self.transcript.append("smoke", image=image, image_id=image_id, product=run.kind,
                               **smoke.model_dump(exclude={"kind"}), reason=result.reason,
                               output_tail=result.output[-LOG_TAIL:])
        if result.passed:
            return Shipment(image=image, image_id=image_id, dockerfile=source, smoke=smoke)
        what = f"`{run.command}`" + (f" (probing {result.health_url})" if result.health_url else "")
        return Shipment(
            image=image, image_id=image_id, dockerfile=source, smoke=smoke,
            failure=f"the smoke check of {image} failed: {what}: {result.reason}" + _ends(result.output),
            feedback=f"The smoke check of the image {image} failed: {what}: {result.reason}.\n\n"
                     f"Its output's tail:\n{result.output[-FEEDBACK_TAIL:]}",
        )


def _ends(output: str, chars: int = 300) -> str:
    """How an output ends, on one line: enough for the failure to say what went wrong."""
    tail = " ".join(output.split())[-chars:]
    return f"; its output ends: {tail}" if tail else "; it wrote no output"


def release_context(
    image: str, base: ReleaseBase, run_spec: RunSpec, has_dockerfile: bool, failure: str | None = None
) -> str:
    """What the deployer is told beyond the tickets: what changed since the last release, how the image is checked."""
    if base.previous:
        lines = [f"The previous release is {base.previous}; the commits on main since then:"]
    else:
        lines = ["This is the product's first release; the commits on main:"]
    lines += [f"- {subject}" for subject in base.changes] or ["- (none)"]
    if base.more_changes:
        lines.append(f"- ... and {base.more_changes} more")
    if run_spec.kind == "service" and run_spec.command:
        check = (f"starting it with `{run_spec.command}` (a service) and waiting for port {run_spec.port}, "
                 f"path {run_spec.health_path}, to answer")
    elif run_spec.command:
        check = f"running `{run_spec.command}` in it (a {run_spec.kind}), which must exit 0"
    else:
        check = ("importing the product's top-level packages (or modules) in it (the stack's default check: the plan "
                 "gave no smoke command, or not every ticket landed)")
    lines += ["", f"After your commit the orchestrator builds the image {image} from main and checks it by {check}."]
    lines.append("Your Dockerfile is used (checked first)." if has_dockerfile else
                 "There is no Dockerfile: the default image puts the product in /app, importable from anywhere.")
    if failure:
        lines += ["", f"Your last release attempt failed:\n\n{failure}\n\nFix its cause if it is in your files."]
    return "\n".join(lines)
