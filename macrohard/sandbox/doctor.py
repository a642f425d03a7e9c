"""`macrohard sandbox doctor`: does the engine answer, is the image there, and did every
hardening option take effect in a real container?

Options are checked from inside a throwaway sandbox, where they matter: an engine can
accept an option and not apply it (a cgroup controller missing, a rootless engine,
a runtime that ignores it).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
from docker.errors import ImageNotFound
from pydantic import BaseModel

from macrohard.config import SandboxSettings, size_bytes
from macrohard.errors import SandboxError
from macrohard.sandbox.docker import BUILD_HINT, SANDBOX_ENV, DockerSandbox, DockerSandboxProvider, docker_client
from macrohard.sandbox.image import DockerFailure, one_line

DOCTOR_LABELS = {"macrohard.doctor": "1"}
UNLIMITED = "no limit"
# Shell words only, one `key=value` line per fact; the cgroup v2 path first, then v1.
PROBE = r"""
echo "uid=$(id -u):$(id -g)"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
echo "capeff=$(awk '/^CapEff:/{print $2}' /proc/self/status)"
echo "nnp=$(awk '/^NoNewPrivs:/{print $2}' /proc/self/status)"
case "$(awk '$2=="/"{print $4}' /proc/mounts)" in ro,*|ro) echo root=read-only;; *) echo root=writable;; esac
echo "tmp=$(awk '$2=="/tmp"{print $3" "$4}' /proc/mounts)"
echo "memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"
echo "cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "env=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
sock=absent; for s in /var/run/docker.sock /run/docker.sock; do [ -e "$s" ] && sock=present; done
grep -q docker.sock /proc/mounts && sock=mounted
echo "socket=$sock"
"""
# Docker or the shell add these to every environment.
ALLOWED_ENV = set(SANDBOX_ENV) | {"HOSTNAME", "PWD", "SHLVL", "_"}


class Check(BaseModel):
    name: str
    expected: str
    found: str
    ok: bool


class DoctorReport(BaseModel):
    checks: list[Check]
    weakened: list[str]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def run_doctor(
    settings: SandboxSettings, connect: Callable[[], docker.DockerClient] = docker_client
) -> DoctorReport:
    """Check the engine, the image and, in a throwaway sandbox, every hardening option."""
    return DoctorReport(checks=list(_checks(settings, connect)), weakened=settings.weakened())


def _checks(settings: SandboxSettings, connect: Callable[[], docker.DockerClient]) -> Iterator[Check]:
    """The checks in order; each failure of the engine or image ends the list."""
    try:
        client = connect()
        version = client.version()
    except (SandboxError, *DockerFailure) as e:
        yield Check(name="engine", expected="answers", found=_reason(e), ok=False)
        return
    found = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    yield Check(name="engine", expected="answers", found=found, ok=True)
    try:
        image = client.images.get(settings.image)
    except ImageNotFound:
        yield Check(name="image", expected=settings.image, found=f"missing ({BUILD_HINT})", ok=False)
        return
    except DockerFailure as e:
        yield Check(name="image", expected=settings.image, found=_reason(e), ok=False)
        return
    size = (image.attrs.get("Size") or 0) / 1e6
    yield Check(name="image", expected=settings.image, found=f"{image.short_id}, {size:.0f} MB", ok=True)
    yield from _sandbox_checks(settings, client)


def _sandbox_checks(settings: SandboxSettings, client: docker.DockerClient) -> list[Check]:
    # The provider would warn about weakened settings; the report lists them instead.
    provider = _quiet_provider(settings, client)
    with tempfile.TemporaryDirectory(prefix="macrohard-doctor-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        try:
            sandbox = provider.start(workdir, labels=DOCTOR_LABELS)
        except SandboxError as e:
            return [Check(name="sandbox starts", expected="ready", found=_reason(e), ok=False)]
        with sandbox:
            ready = time.monotonic() - started
            probe = sandbox.exec(PROBE, timeout_s=30)
            timeout = sandbox.exec("sleep 30", timeout_s=0.5)
            facts = dict(
                line.split("=", 1) for line in probe.output.splitlines() if "=" in line
            )
            return [
                Check(name="sandbox starts", expected="ready", found=f"ready in {ready:.2f} s", ok=True),
                _runner_check(sandbox, settings),
                *_isolation_checks(facts, settings, sandbox.user),
                *_limit_checks(facts, settings),
                _timeout_check(timeout.timed_out, timeout.duration_s),
            ]


def _quiet_provider(settings: SandboxSettings, client: docker.DockerClient) -> DockerSandboxProvider:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DockerSandboxProvider(settings, client)


def _runner_check(sandbox: DockerSandbox, settings: SandboxSettings) -> Check:
    # With CAP_KILL added the runner cannot tell the sandbox from a host, so it
    # refuses to kill processes outside a timed-out command's group.
    expected = "ends escaped processes" if "KILL" not in settings.cap_add else "ends the command's group only"
    found = "ends escaped processes" if sandbox.contained else "ends the command's group only"
    return Check(name="command runner", expected=expected, found=found, ok=found == expected)


def _isolation_checks(facts: dict[str, str], s: SandboxSettings, user: str) -> list[Check]:
    net = facts.get("net", "?").split()
    env = set(facts.get("env", "").split())
    caps = int(facts.get("capeff", "f" * 16) or "f" * 16, 16)
    return [
        _check("network", "bridge" if s.network else "none (only lo)",
               "none (only lo)" if net == ["lo"] else " ".join(net), s.network or net == ["lo"]),
        _check("user", user, facts.get("uid", "?"),
               facts.get("uid") == user and (s.allow_root or not user.startswith("0:"))),
        _check("capabilities", "none" if not s.cap_add else ", ".join(s.cap_add),
               "none" if caps == 0 else f"CapEff {caps:016x}", caps == 0 or bool(s.cap_add)),
        _check("no-new-privileges", "on" if s.no_new_privileges else "off",
               "on" if facts.get("nnp") == "1" else "off", (facts.get("nnp") == "1") == s.no_new_privileges),
        _check("root file system", "read-only" if s.read_only else "writable",
               facts.get("root", "?"), facts.get("root") == ("read-only" if s.read_only else "writable")),
        _check("init as PID 1", "docker-init" if s.init else "sleep", facts.get("pid1", "?").strip(),
               facts.get("pid1", "").startswith("/sbin/docker-init") == s.init),
        _check("environment", "nothing from the host", " ".join(sorted(env - ALLOWED_ENV)) or "clean",
               env <= ALLOWED_ENV),
        _check("Docker socket", "absent", facts.get("socket", "?"), facts.get("socket") == "absent"),
    ]


def _limit_checks(facts: dict[str, str], s: SandboxSettings) -> list[Check]:
    tmp = facts.get("tmp", "")
    tmp_size = next((o.split("=", 1)[1] for o in tmp.split(" ")[-1].split(",") if o.startswith("size=")), "")
    return [
        _limit("/tmp tmpfs", size_bytes(s.tmpfs_size), _bytes(tmp_size) if tmp.startswith("tmpfs") else None),
        _limit("memory limit", size_bytes(s.memory), _bytes(facts.get("memory", ""))),
        _limit("process limit", s.pids_limit, _bytes(facts.get("pids", ""))),
        _cpu_check(facts.get("cpu", ""), s.cpus),
    ]


def _timeout_check(timed_out: bool, duration: float) -> Check:
    ok = timed_out and duration < 5
    return _check("time limit", "`sleep 30` ended at 0.5 s", f"ended after {duration:.2f} s" if timed_out
                  else f"not ended ({duration:.2f} s)", ok)


def _cpu_check(raw: str, cpus: float) -> Check:
    parts = raw.split()
    found: float | None = None
    if len(parts) == 2 and parts[0] not in ("max", "-1") and parts[1].isdigit():
        found = int(parts[0]) / int(parts[1])
    expected = f"{cpus:g}" if cpus else UNLIMITED
    shown = f"{found:g}" if found is not None else (UNLIMITED if parts and parts[0] in ("max", "-1") else raw or "?")
    ok = found is not None and abs(found - cpus) < 0.01 if cpus else found is None
    return _check("CPU limit", expected, shown, ok)


def _limit(name: str, expected: int, found: int | None) -> Check:
    """A limit where 0 expected means none; kernels show none as `max` or a huge number."""
    unlimited = found is None or found >= 2**62
    shown = UNLIMITED if unlimited else str(found)
    want = str(expected) if expected else UNLIMITED
    return _check(name, want, shown, (unlimited and not expected) or (found == expected))


def _bytes(value: str) -> int | None:
    """A kernel's number (plain, or with a k/m/g suffix as in mount options); None for `max`."""
    value = value.strip()
    if not value or value == "max":
        return None
    try:
        return size_bytes(value)
    except ValueError:
        return None


def _check(name: str, expected: str, found: str, ok: bool) -> Check:
    return Check(name=name, expected=expected, found=found, ok=ok)


def _reason(e: BaseException) -> str:
    return e.message if isinstance(e, SandboxError) else one_line(e, 120)
