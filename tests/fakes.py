"""A sandbox that runs commands as local subprocesses, and product images that are folders:
for fast unit tests of the graph.

They sit behind the Sandbox and ProductImages protocols only; the e2e tests use the real
Docker sandbox and engine.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from macrohard.models import RunSpec
from macrohard.sandbox.base import ExecResult, Extras, ImageBuild, ProductImage, SmokeResult
from macrohard.stacks import CACHE_DIR, DEPS_DIR, Stack


class LocalSandbox:
    def __init__(self, workdir: Path, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None,
                 extras: Extras | None = None) -> None:
        self.workdir = workdir
        self.extras = extras or Extras()
        self.labels = labels
        self.read_only = read_only
        self.output_path = str(output_dir) if output_dir is not None else ""
        self.stopped = False
        self.paused = False
        self.pauses = 0
        self.timeouts: list[float | None] = []
        self.warmed: list[str] = []
        self.ends: list[bool] = []  # end_processes() calls: whether each kept the warm commands
        self.commands: list[str] = []

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        self.timeouts.append(timeout_s)
        self.commands.append(command)
        if self.extras.deps is not None:  # the test command names the container's /deps
            command = command.replace(f'"{DEPS_DIR}"', f'"{self.extras.deps}"')
        started = time.perf_counter()
        proc = subprocess.run(
            ["sh", "-c", command], cwd=self.workdir, capture_output=True, timeout=timeout_s or 60,
            stdin=subprocess.DEVNULL,  # as the sandbox's runner gives commands: nothing to read
            env=_environment({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **self._extra_env()}),
        )
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        return ExecResult(command=command, exit_code=proc.returncode, duration_s=time.perf_counter() - started,
                          output=out, output_bytes=len(out))

    def _extra_env(self) -> dict[str, str]:
        # The container's mounts, as host paths: packages on PYTHONPATH, the cache where /cache would be.
        env = {}
        if self.extras.cache is not None:
            env = {k: v.replace(CACHE_DIR, str(self.extras.cache), 1) for k, v in self.extras.env.items()}
        if self.extras.deps is not None:
            env["PYTHONPATH"] = str(self.extras.deps)
        return env

    def warm(self, command: str) -> None:
        # Only recorded: starting ahead saves time in a container, and exec runs the command either way.
        self.warmed.append(command)

    def end_processes(self, *, keep_warm: bool = False) -> None:
        self.ends.append(keep_warm)  # a local command leaves nothing running to end

    def idle(self) -> bool:
        # Never idle: commits freeze it, as a sandbox with a process left running is.
        return False

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def unpause(self) -> None:
        self.paused = False

    def stop(self) -> None:
        self.stopped = True


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp",
            **(extra or {})}


class LocalProductImages:
    """Product images as folders: a build copies the context (a COPY of a missing path fails, as it does
    on the engine), and the smoke check runs the command there as a local process, the product importable."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="macrohard-fake-images-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.images: dict[str, ProductImage] = {}
        self.dockerfiles: dict[str, str] = {}
        self.bases: dict[str, str] = {}  # an image built FROM another of these: its id -> that one's
        self.built: list[str] = []  # the tags built, in order
        self.smoked: list[tuple[str, RunSpec]] = []

    def find(self, labels: dict[str, str]) -> list[ProductImage]:
        found = [i for i in self.images.values() if all(i.labels.get(k) == v for k, v in labels.items())]
        return sorted(found, key=lambda i: i.created, reverse=True)

    def build(self, context: Path, dockerfile: str, *, tag: str, labels: dict[str, str]) -> ImageBuild:
        for line in dockerfile.splitlines():
            words = line.split()
            if words and words[0] == "COPY":
                for source in (w for w in words[1:-1] if not w.startswith("--")):
                    if not (context / source).exists():
                        error = f"COPY failed: file not found in build context: stat {source}: file does not exist"
                        return ImageBuild(error=error, log=f"Step 2/4 : {line}\n{error}\n", log_bytes=100)
        digest = hashlib.sha256(dockerfile.encode())
        for path in sorted(context.rglob("*")):
            if path.is_file() and not path.is_symlink():
                digest.update(str(path.relative_to(context)).encode() + path.read_bytes())
        image_id = f"sha256:{digest.hexdigest()}"
        shutil.copytree(context, self.root / image_id[7:], symlinks=True, dirs_exist_ok=True)
        for image in self.images.values():
            image.tags = [t for t in image.tags if t != tag]
        created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        self.images[image_id] = ProductImage(id=image_id, tags=[tag], labels=dict(labels), created=created)
        self.dockerfiles[image_id] = dockerfile
        base = dockerfile.split("\n", 1)[0].removeprefix("FROM ").strip()
        if base in self.images and base != image_id:
            self.bases[image_id] = base
        self.built.append(tag)
        log = "".join(f"Step {n}/{len(dockerfile.splitlines())} : {line}\n" for n, line in enumerate(dockerfile.splitlines(), 1))
        return ImageBuild(image_id=image_id, log=log + f"Successfully built {image_id[7:19]}\n", log_bytes=len(log))

    def tag(self, image_id: str, tag: str) -> None:
        for image in self.images.values():
            image.tags = [t for t in image.tags if t != tag] + ([tag] if image.id == image_id else [])

    def smoke(self, image_id: str, run: RunSpec, *, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        self.smoked.append((image_id, run))
        folder = self.root / image_id[7:]
        chain = [folder]
        while image_id in self.bases:  # the layers below: a product's packages
            image_id = self.bases[image_id]
            chain.append(self.root / image_id[7:])
        env = _environment({"PYTHONPATH": ":".join(map(str, chain))})
        started = time.perf_counter()
        if run.kind == "service":
            return self._service(folder, env, run, timeout_s, started)
        try:
            proc = subprocess.run(["sh", "-c", run.command], cwd=folder, env=env, capture_output=True,
                                  timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"") + (e.stderr or b"")
            return SmokeResult(passed=False, timed_out=True, output=out.decode(errors="replace"),
                               reason=f"it did not end within {timeout_s:g}s", duration_s=time.perf_counter() - started)
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        passed = proc.returncode == 0
        return SmokeResult(passed=passed, exit_code=proc.returncode, output=out,
                           reason="" if passed else f"it exited with code {proc.returncode}",
                           duration_s=time.perf_counter() - started)

    def _service(self, folder: Path, env: dict[str, str], run: RunSpec, timeout_s: float, started: float) -> SmokeResult:
        url = f"http://127.0.0.1:{run.port}{run.health_path}"
        log = folder / ".service.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["sh", "-c", run.command], cwd=folder, env=env, stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        passed, reason, deadline = False, "", time.monotonic() + timeout_s
        try:
            while not passed:
                if proc.poll() is not None:
                    reason = f"the service exited with code {proc.returncode} before its health endpoint answered"
                    break
                if time.monotonic() > deadline:
                    reason = f"its health endpoint did not answer within {timeout_s:g}s"
                    break
                try:
                    with urllib.request.urlopen(url, timeout=1):
                        passed = True
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return SmokeResult(passed=passed, exit_code=0 if passed else None, output=log.read_text(errors="replace"),
                           reason=reason, health_url=url, duration_s=time.perf_counter() - started)

    def remove(self, labels: dict[str, str]) -> list[ProductImage]:
        removed = self.find(labels)
        for image in removed:
            del self.images[image.id]
            shutil.rmtree(self.root / image.id[7:], ignore_errors=True)
        return removed


class LocalSandboxProvider:
    def __init__(self, images: LocalProductImages | None = None) -> None:
        self.started: list[LocalSandbox] = []
        self.pruned: list[dict[str, str] | None] = []
        self.stacks: list[str] = []  # the stacks whose images were asked for
        self.images = images or LocalProductImages()

    def product_images(self) -> LocalProductImages:
        return self.images

    def start(
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None,
        extras: Extras | None = None,
    ) -> LocalSandbox:
        box = LocalSandbox(workdir, labels, read_only, output_dir, extras)
        self.started.append(box)
        return box

    def ensure_image(self, stack: Stack) -> str:
        self.stacks.append(stack.name)
        return stack.image

    def prune(self, labels: dict[str, str] | None = None) -> int:
        self.pruned.append(labels)
        return 0

    def prune_orphans(self, labels: dict[str, str] | None = None) -> int:
        return 0
