"""The product's environment: its stack, and the third-party packages its manifest declares.

The stack (macrohard/stacks.py) is chosen once, when the plan is accepted: the
configuration's, else the product manager's (`describe_product`), else Python. It names
the sandbox image every later sandbox starts from, and what the roles are told.

Packages never reach a sandbox through its network (it has none): before each command a
role runs, the orchestrator reads the manifest in the role's worktree, resolves and
fetches what it declares on the host (dependencies/store.py: wheels only, hashes
checked) and puts the installed set into the folder the sandbox mounts read-only at
/deps. A verdict gets the set its commit's manifest declares, read from git's objects;
so does the release's image. Each new set is a `dependencies` event naming every
package, its version and its sha256; a set that cannot be had is an error the role reads.

    run_dir/environment/stack.json      the chosen stack (a resumed run keeps it)
    run_dir/environment/deps/<key>/     what a ticket's (or main's) sandbox sees at /deps
    run_dir/environment/cache/<key>/    its cache at /cache, kept across the ticket's attempts
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from macrohard.agent.confined import Confined
from macrohard.agent.tools import ToolError
from macrohard.config import Settings
from macrohard.dependencies.manifest import ManifestError, Requirements, node_dependencies, read_requirements
from macrohard.dependencies.store import DependencyError, DependencyStore, Installed
from macrohard.models import Package
from macrohard.sandbox.base import Extras, SandboxProvider
from macrohard.stacks import DEFAULT, Stack, stack_named
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace
from macrohard.workspace.tree import empty_folder

MAX_MANIFEST_BYTES = 256 * 1024


class PackagesUnavailable(Exception):
    """The product's manifest cannot be read or its packages cannot be had; the message says why, for a role."""


class ProductEnvironment:
    def __init__(
        self, settings: Settings, provider: SandboxProvider, workspace: GitWorkspace, transcript: TranscriptLog,
        store: DependencyStore | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.workspace = workspace
        self.transcript = transcript
        self.store = store or DependencyStore(settings.dependencies)
        self.folder = workspace.run_dir / "environment"
        self.stack = self._recorded() or stack_named(settings.stack or DEFAULT)
        self._image: str | None = None
        self._synced: dict[str, str] = {}  # sandbox key -> the requirements its /deps holds
        self._lock = threading.Lock()

    # -- the stack ---------------------------------------------------------------

    def choose(self, planned: str | None) -> Stack:
        """Fix the run's stack as the plan is accepted: the configuration's, else the plan's."""
        stack = stack_named(self.settings.stack or planned or DEFAULT)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "stack.json").write_text(json.dumps({"stack": stack.name}))
        with self._lock:
            changed, self.stack, self._image = stack.name != self.stack.name, stack, None
        if changed:
            self.transcript.append("stack", stack=stack.name, image=self.image)
        return stack

    def _recorded(self) -> Stack | None:
        try:
            return stack_named(json.loads((self.folder / "stack.json").read_text())["stack"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def image(self) -> str:
        """The sandbox image of the stack, built from Debian's packages first if it is missing."""
        with self._lock:
            if self._image is None:
                self._image = self.provider.ensure_image(self.stack)
            return self._image

    # -- what sandboxes get --------------------------------------------------------

    def extras(self, key: str) -> Extras:
        """A role's sandbox: the stack's image, its packages at /deps, its own cache at /cache."""
        deps, cache = (self.folder / kind / _folder_name(key) for kind in ("deps", "cache"))
        deps.mkdir(parents=True, exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        return Extras(image=self.image, deps=deps, cache=cache, env=self.stack.cache_env)

    def verdict_extras(self, deps: Path) -> Extras:
        """A verdict's sandbox: the stack's image and, at /deps, what fill_commit() puts in `deps`."""
        deps.mkdir(parents=True, exist_ok=True)
        return Extras(image=self.image, deps=deps)

    def sync(self, key: str, root: Path, *, role: str | None, ticket: str | None) -> None:
        """Make `key`'s /deps hold what the manifest in `root` declares, before a role's command.

        Raises ToolError, for the role, when the manifest cannot be read or a package cannot be had.
        """
        try:
            requirements = self._requirements(lambda path: _read_confined(root, path))
            if self._synced.get(key) == requirements.digest:
                return
            installed = self._install(requirements, role=role, ticket=ticket)
        except PackagesUnavailable as e:
            raise ToolError(f"{e}. The command was not run; fix the manifest (or use the standard library).") from None
        _fill(self.folder / "deps" / _folder_name(key), installed.site if installed else None)
        self._synced[key] = requirements.digest

    def fill_commit(self, sha: str, deps: Path) -> list[Package]:
        """Put the packages sha's manifest declares into `deps` (a verdict's, a release's); what they are."""
        installed = self._install(self._requirements(lambda path: self.workspace.show(sha, path)), role=None, ticket=None)
        _fill(deps, installed.site if installed else None)
        return installed.packages if installed else []

    # -- reading and installing ------------------------------------------------------

    def _requirements(self, read: Callable[[str], bytes | None]) -> Requirements:
        try:
            files = {path: read(path) for path in self.stack.manifest}
            if not self.stack.fetches_packages:
                names = node_dependencies(files["package.json"]) if files.get("package.json") else []
                if names:
                    raise PackagesUnavailable(
                        f"package.json declares {', '.join(names)}: the {self.stack.name} stack has no package registry "
                        "here; remove them from package.json and use the standard library")
                return Requirements(items=[], source="")
            return read_requirements(files)
        except ManifestError as e:
            raise PackagesUnavailable(str(e)) from None

    def _install(self, requirements: Requirements, *, role: str | None, ticket: str | None) -> Installed | None:
        if not requirements.items:
            return None
        try:
            installed = self.store.install(requirements)
        except DependencyError as e:
            self.transcript.append("dependencies.refused", role=role, ticket=ticket, manifest=requirements.source,
                                   requirements=requirements.items, reason=str(e))
            raise PackagesUnavailable(f"the packages in {requirements.source} cannot be had: {e}") from None
        if role is not None:  # a role's new set: a verdict or a release installs one a role already had
            self.transcript.append("dependencies", role=role, ticket=ticket, manifest=requirements.source,
                                   requirements=requirements.items, digest=installed.digest,
                                   packages=[p.model_dump() for p in installed.packages])
        return installed


def _read_confined(root: Path, path: str) -> bytes | None:
    """A manifest in a worktree, read without following a link out of it (a role's process may plant one)."""
    if (root / path).is_symlink():
        # Git stores a link as its target's name: the verdict would read other requirements than the role's.
        raise PackagesUnavailable(f"{path} is a link: write the requirements in {path} itself")
    try:
        fd, _ = Confined(root).open(path)
    except ToolError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise PackagesUnavailable(f"{path} is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    return data


def _fill(target: Path, site: Path | None) -> None:
    """Make target (a mounted folder, so kept itself) hold exactly site's files: hard links where possible."""
    target.mkdir(parents=True, exist_ok=True)
    empty_folder(target)
    if site is None:
        return
    for folder, dirs, files in os.walk(site):
        here = target / Path(folder).relative_to(site)
        for name in dirs:
            if Path(folder, name).is_symlink():  # walked as a link, not into
                (here / name).symlink_to(os.readlink(Path(folder, name)))
            else:
                (here / name).mkdir()
        for name in files:
            if name == ".complete" and folder == str(site):
                continue
            source, dest = Path(folder, name), here / name
            if source.is_symlink():
                dest.symlink_to(os.readlink(source))
                continue
            try:
                os.link(source, dest)
            except OSError:  # another file system
                shutil.copy2(source, dest)


def _folder_name(key: str) -> str:
    return key.replace(":", "-").replace("/", "-")
