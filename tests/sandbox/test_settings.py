"""[sandbox] settings: hardened defaults, each one overridable, and a warning for every weakening."""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import docker
import pytest
from pydantic import ValidationError

from macrohard.config import SandboxSettings, load_settings, size_bytes
from macrohard.errors import ConfigError
from macrohard.sandbox.access import sandbox_user
from macrohard.sandbox.docker import (
    KEEP_ALIVE_UID,
    OWNER_LABEL,
    SANDBOX_ENV,
    DockerSandboxProvider,
    SandboxWeakenedWarning,
)

WEAKENINGS = [
    ({"network": True}, "network = true"),
    ({"allow_root": True}, "allow_root = true"),
    ({"read_only": False}, "read_only = false"),
    ({"no_new_privileges": False}, "no_new_privileges = false"),
    ({"cap_add": ["net_raw"]}, "cap_add = ['NET_RAW']"),
    ({"init": False}, "init = false"),
    ({"memory": "2g"}, "memory = '2g': limit raised"),
    ({"memory": "0"}, "memory = '0': no limit"),
    ({"cpus": 2}, "cpus = 2.0: limit raised"),
    ({"cpus": 0}, "cpus = 0.0: no limit"),
    ({"pids_limit": 1000}, "pids_limit = 1000: limit raised"),
    ({"pids_limit": 0}, "pids_limit = 0: no limit"),
    ({"tmpfs_size": "1g"}, "tmpfs_size = '1g': limit raised"),
]


def options(settings: SandboxSettings, user: str = "1000:1000") -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWeakenedWarning)
        provider = DockerSandboxProvider(settings, cleanup_on_exit=False)
    return provider._run_options(Path("/srv/work"), user, {"macrohard.run": "r1"})


def test_the_defaults_are_hardened_and_warn_about_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DockerSandboxProvider(SandboxSettings(), cleanup_on_exit=False)
    assert SandboxSettings().weakened() == []
    o = options(SandboxSettings())
    assert o["network_mode"] == "none" and o["cap_drop"] == ["ALL"] and o["cap_add"] is None
    assert o["security_opt"] == ["no-new-privileges"] and o["read_only"] is True and o["init"] is True
    assert (o["mem_limit"], o["memswap_limit"], o["pids_limit"], o["nano_cpus"]) == ("1g", "1g", 256, 10**9)
    assert o["tmpfs"] == {"/tmp": "size=64m,mode=1777,exec"} and o["shm_size"] == 64 * 2**20
    assert o["user"] == f"{KEEP_ALIVE_UID}:{KEEP_ALIVE_UID}"
    assert o["environment"] == SANDBOX_ENV  # nothing from the host's environment
    labels = o["labels"]
    assert isinstance(labels, dict) and labels["macrohard.run"] == "r1" and labels["macrohard.sandbox"] == "1"
    assert labels[OWNER_LABEL].split(":")[1] == str(os.getpid())
    assert "docker.sock" not in str(o["volumes"])


@pytest.mark.parametrize("update, message", WEAKENINGS)
def test_each_weakening_is_named_and_warned_about(update: dict[str, object], message: str) -> None:
    settings = SandboxSettings(**update)
    assert len(settings.weakened()) == 1 and message in settings.weakened()[0]
    with pytest.warns(SandboxWeakenedWarning, match="sandbox hardening weakened: " + message.split(":")[0][:10]):
        DockerSandboxProvider(settings, cleanup_on_exit=False)


def test_tighter_limits_are_not_weakenings() -> None:
    small = SandboxSettings(memory="256m", cpus=0.5, pids_limit=64, tmpfs_size="16m")
    assert small.weakened() == []


def test_overrides_reach_the_container_options() -> None:
    o = options(SandboxSettings(
        network=True, read_only=False, no_new_privileges=False, cap_add=["CAP_NET_RAW"], init=False,
        memory="0", cpus=0, pids_limit=0, tmpfs_size="0",
    ))
    assert o["network_mode"] == "bridge" and o["cap_add"] == ["NET_RAW"] and o["cap_drop"] == ["ALL"]
    assert (o["security_opt"], o["read_only"], o["init"]) == ([], False, False)
    for absent in ("mem_limit", "memswap_limit", "pids_limit", "nano_cpus", "shm_size"):
        assert absent not in o


def test_the_keep_alive_never_shares_the_sandbox_users_uid() -> None:
    assert options(SandboxSettings(), user=f"{KEEP_ALIVE_UID}:{KEEP_ALIVE_UID}")["user"] == "65533:65533"


@pytest.mark.skipif(os.geteuid() != 0, reason="root-owned workdirs only happen when running as root")
def test_allow_root_runs_root_owned_worktrees_as_root(tmp_path: Path) -> None:
    assert sandbox_user(tmp_path, 10001, allow_root=True) == "0:0"
    assert "system.posix_acl_access" not in os.listxattr(tmp_path)
    assert sandbox_user(tmp_path, 10001) == "10001:10001"


def test_sizes_and_unknown_keys_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (size_bytes("64m"), size_bytes("1G"), size_bytes("512"), size_bytes("0")) == (2**26, 2**30, 512, 0)
    with pytest.raises(ValidationError):
        SandboxSettings(memory="lots")
    with pytest.raises(ValidationError):
        SandboxSettings(pids_limit=-1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text('[sandbox]\nnetwrok = true\n')
    with pytest.raises(ConfigError, match="netwrok"):
        load_settings()
    (tmp_path / "macrohard.toml").write_text('[sandbox]\nmemory = "0"\ncap_add = ["SYS_PTRACE"]\n')
    s = load_settings().sandbox
    assert (s.memory, s.cap_add) == ("0", ["SYS_PTRACE"])


@pytest.mark.docker
def test_weakened_settings_take_effect(
    docker_client: docker.DockerClient, sandbox_image: str, tmp_path: Path
) -> None:
    labels = {"macrohard.test": f"settings-{uuid.uuid4().hex[:8]}"}
    settings = SandboxSettings(image=sandbox_image, read_only=False, init=False, memory="0", pids_limit=0)
    with pytest.warns(SandboxWeakenedWarning):
        provider = DockerSandboxProvider(settings, docker_client, cleanup_on_exit=False)
    with provider.start(tmp_path, labels=labels) as sandbox:
        host = docker_client.api.inspect_container(sandbox.id)["HostConfig"]
        result = sandbox.exec("awk '$2==\"/\"{print $4}' /proc/mounts; tr '\\0' ' ' < /proc/1/cmdline")
    assert (host["ReadonlyRootfs"], host["Init"], host["Memory"], host["PidsLimit"] or 0) == (False, False, 0, 0)
    assert result.output.startswith("rw,") and "sleep infinity" in result.output and "docker-init" not in result.output
    assert provider.prune(labels) == 0
