"""Third-party packages for products, fetched by the orchestrator and kept across runs.

The one module that runs pip. It runs on the host, so it never runs a package's code:
wheels only (`--only-binary=:all:`, no source distribution is ever built), chosen for
the sandbox's Python and platform rather than the host's. A set of requirements is
resolved once (pip's dry-run report names each file and its sha256), each wheel is
downloaded from the index the user's configuration names and checked against that hash
(and again whenever a cached one is reused), and the set is installed once into a
folder of its own, keyed by what was resolved. Sandboxes mount that folder read-only:
they never reach the network.

    cache/wheels/<file>.whl          every wheel, checked by sha256
    cache/resolved/<digest>.json     requirements (and index, platform) -> the packages
    cache/sites/<digest>/            a set installed (`pip install --target`), read-only once made
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from pydantic import BaseModel

from macrohard.config import DependencySettings
from macrohard.dependencies.manifest import Requirements, canonical, requirement_name
from macrohard.models import Package
from macrohard.redact import without_userinfo

DOWNLOAD_CHUNK = 1 << 20
MB = 1 << 20
MAX_PACKAGES = 300  # a resolution beyond this is refused: every package is fetched, checked and installed on the host


class Installed(BaseModel):
    """A set of requirements, resolved and installed: what a sandbox mounts at /deps."""

    digest: str  # of what was resolved: names a site
    site: Path
    packages: list[Package]


class DependencyError(Exception):
    """Packages that cannot be had; the message is for the role (and the user)."""


class DependencyStore:
    def __init__(self, settings: DependencySettings, *, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.root = settings.cache
        self._lock = threading.Lock()  # one resolution or install at a time
        self._env = dict(os.environ if environ is None else environ)

    def install(self, requirements: Requirements) -> Installed:
        """The installed set for these requirements, resolving, fetching and installing what is missing."""
        self._check_policy(requirements)
        with self._lock:
            packages = self._resolved(requirements)
            # What they pull in too, every time: a resolution cached under another policy is no exception.
            self._check_policy(requirements, [canonical(p.name) for p in packages])
            digest = hashlib.sha256("\n".join(f"{p.filename}:{p.sha256}" for p in packages).encode()).hexdigest()[:32]
            site = self.root / "sites" / digest
            if not (site / ".complete").is_file():
                wheels = [self._wheel(p) for p in packages]
                self._check_installed_size(wheels)
                self._install(wheels, site)
            return Installed(digest=digest, site=site, packages=packages)

    # -- policy ----------------------------------------------------------------

    def _check_policy(self, requirements: Requirements, names: list[str] | None = None) -> None:
        for name in names if names is not None else [requirement_name(r) for r in requirements.items]:
            if any(fnmatch.fnmatch(name, canonical(p)) for p in self.settings.deny):
                raise DependencyError(f"{name} is denied by [dependencies] deny in the configuration: use another package")
            if self.settings.allow and not any(fnmatch.fnmatch(name, canonical(p)) for p in self.settings.allow):
                raise DependencyError(
                    f"{name} is not in [dependencies] allow in the configuration: use one of "
                    f"{', '.join(self.settings.allow)}, or the standard library"
                )

    # -- resolving -------------------------------------------------------------

    def _resolved(self, requirements: Requirements) -> list[Package]:
        key = hashlib.sha256(json.dumps({
            "requirements": requirements.items, "index": self.settings.index_url,
            "python": self.settings.python_version, "platforms": self.settings.platforms,
        }, sort_keys=True).encode()).hexdigest()[:32]
        record = self.root / "resolved" / f"{key}.json"
        try:
            return [Package.model_validate(p) for p in json.loads(record.read_text())]
        except (OSError, ValueError):
            pass
        packages = self._resolve(requirements)
        if len(packages) > MAX_PACKAGES:
            raise DependencyError(f"the requirements pull in {len(packages)} packages, more than {MAX_PACKAGES}: "
                                  "depend on fewer")
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps([p.model_dump() for p in packages], indent=1))
        return packages

    def _resolve(self, requirements: Requirements) -> list[Package]:
        with tempfile.TemporaryDirectory(prefix="macrohard-resolve-") as tmp:
            report = Path(tmp) / "report.json"
            # As arguments, never as a requirements file: see manifest._checked (each starts with a name, not "-").
            self._pip("install", "--dry-run", "--ignore-installed", "--report", str(report), "--target", str(Path(tmp) / "t"),
                      *self._binary_only(), *requirements.items)
            data = json.loads(report.read_text())
        packages = []
        for item in data.get("install", []):
            info = item.get("download_info") or {}
            sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256")
            url = str(info.get("url", ""))
            if not sha or not url.endswith(".whl"):
                name = (item.get("metadata") or {}).get("name", "?")
                raise DependencyError(f"{name} has no wheel with a sha256 the index names: only wheels are installed")
            meta = item.get("metadata") or {}
            packages.append(Package(name=str(meta.get("name")), version=str(meta.get("version")),
                                    filename=url.rsplit("/", 1)[-1].split("#", 1)[0], sha256=sha, url=without_userinfo(url)))
        return sorted(packages, key=lambda p: canonical(p.name))

    def _binary_only(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.settings.python_version, "--implementation", "cp"]
        for platform in self.settings.platforms:
            args += ["--platform", platform]
        if self.settings.index_url:
            args += ["--index-url", self.settings.index_url]
        return args

    # -- fetching and installing -----------------------------------------------

    def _wheel(self, package: Package) -> Path:
        """The package's wheel in the cache, downloaded if missing, its sha256 checked either way."""
        path = self.root / "wheels" / package.filename
        if path.is_file() and _sha256(path) == package.sha256:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # pip names the URL it resolved; download it with pip's own index settings behind it.
        with tempfile.TemporaryDirectory(prefix="macrohard-wheel-", dir=path.parent) as tmp:
            self._pip("download", "--no-deps", *self._binary_only(), "--dest", tmp, f"{package.name}=={package.version}")
            found = [f for f in Path(tmp).iterdir() if f.name == package.filename]
            if not found:
                raise DependencyError(f"the index did not serve {package.filename} again for {package.name} {package.version}")
            size_mb = found[0].stat().st_size / MB
            if size_mb > self.settings.max_wheel_mb:
                raise DependencyError(f"{package.filename} is {size_mb:.0f} MB, more than [dependencies] max_wheel_mb "
                                      f"({self.settings.max_wheel_mb:g}): use a smaller package")
            got = _sha256(found[0])
            if got != package.sha256:
                raise DependencyError(f"{package.filename}'s sha256 is {got}, not {package.sha256} as the index said: refused")
            os.replace(found[0], path)
        return path

    def _check_installed_size(self, wheels: list[Path]) -> None:
        """Refuse a set whose wheels unpack to more than the limit, from their zip directories (a zip bomb never
        unpacks); a cached wheel over the per-wheel limit (the limit was lowered since) is refused too."""
        total = 0.0
        for wheel in wheels:
            if wheel.stat().st_size / MB > self.settings.max_wheel_mb:
                raise DependencyError(f"{wheel.name} is {wheel.stat().st_size / MB:.0f} MB, more than [dependencies] "
                                      f"max_wheel_mb ({self.settings.max_wheel_mb:g}): use a smaller package")
            try:
                with zipfile.ZipFile(wheel) as z:
                    total += sum(info.file_size for info in z.infolist()) / MB
            except (zipfile.BadZipFile, OSError) as e:
                raise DependencyError(f"{wheel.name} is not a readable wheel: {e}") from None
        if total > self.settings.max_installed_mb:
            raise DependencyError(f"the packages unpack to {total:.0f} MB, more than [dependencies] max_installed_mb "
                                  f"({self.settings.max_installed_mb:g}): depend on fewer or smaller packages")

    def _install(self, wheels: list[Path], site: Path) -> None:
        site.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(site, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".{site.name}-", dir=site.parent))
        try:
            if wheels:
                # Wheels only, from the files checked above: installing one runs none of its code.
                self._pip("install", "--no-index", "--no-deps", "--only-binary=:all:", "--no-compile",
                          "--target", str(building), *map(str, wheels))
            (building / ".complete").write_text("\n".join(w.name for w in wheels) + "\n")
            os.replace(building, site)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def _pip(self, *args: str) -> str:
        env = {k: v for k, v in self._env.items() if not k.startswith("PIP_NO_")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", *args, "--quiet", "--no-input", "--progress-bar", "off"],
                capture_output=True, text=True, timeout=self.settings.timeout_s, env=env,
            )
        except subprocess.TimeoutExpired as e:
            raise DependencyError(f"pip did not finish within {self.settings.timeout_s:g}s") from e
        if proc.returncode != 0:
            raise DependencyError(_pip_error(proc.stderr or proc.stdout))
        return proc.stdout


def _pip_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    shown = " ".join((errors or lines)[:3])[:500]
    if "No matching distribution" in shown or "Could not find a version" in shown:
        shown += " (only wheels for the sandbox's Python and Linux are accepted: pick a version that ships one)"
    return without_userinfo(shown) or "pip failed with no message"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
