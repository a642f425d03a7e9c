"""Settings from `macrohard.toml`, `MACROHARD_*` environment variables and CLI flags.

Precedence, highest first: flags, environment, the TOML file, defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from macrohard.errors import ConfigError
from macrohard.models import Budget, TreeLimits
from macrohard.stacks import PYTHON_TEST_COMMAND, STACKS, Stack, stack_named

CONFIG_FILE = "macrohard.toml"
# The Python stack's pytest, hardened (see macrohard/stacks.py).
DEFAULT_TEST_COMMAND = PYTHON_TEST_COMMAND


class ModelSettings(BaseModel):
    """Where one role's model lives. Any OpenAI-compatible endpoint works."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    base_url: str | None = None  # None: https://api.openai.com/v1
    # The key itself never goes in the file: name the variable that holds it.
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float | None = None
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=4, ge=0)  # transient failures only: rate limits, connection, 5xx
    # The model's context window in tokens: the agent loop keeps each request below it.
    context_window: int = Field(default=32_768, ge=1024)
    # The longest answer asked for, in tokens (None: whatever the endpoint allows).
    max_tokens: int | None = Field(default=8192, ge=1)
    # Sent with every request that offers tools; None sends none.
    tool_choice: Literal["auto", "required", "none"] | None = "auto"
    # Stream answers (progress shown live, a pause or budget can cut one short).
    stream: bool = True
    # Request parameters never sent to this model, e.g. ["temperature"] for o-series models.
    drop: list[Literal["temperature", "max_tokens", "tool_choice", "stream_options"]] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _no_userinfo(cls, v: str | None) -> str | None:
        # A password in the URL would be logged, shown and stored with it; keys go in api_key_env.
        if v and urlsplit(v).password is not None:
            raise ValueError("must not hold a user and password; put the key in the variable api_key_env names")
        return v

    def merged(self, override: ModelSettings | None) -> ModelSettings:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


_SIZE = re.compile(r"^\s*(\d+)\s*([bkmg]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def size_bytes(size: str) -> int:
    """Bytes in a Docker-style size such as `64m` or `1g`; 0 means no limit."""
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"{size!r} is not a size such as 512m or 2g")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    # Input tokens served from the provider's prompt cache; None: priced as input.
    cached_input: float | None = Field(default=None, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens) if self.cached_input is not None else 0
        fresh = prompt_tokens - cached
        return (fresh * self.input + cached * (self.cached_input or 0.0) + completion_tokens * self.output) / 1_000_000


class SandboxSettings(BaseModel):
    """How sandboxes are started. The defaults are the hardened ones; `weakened()` lists departures."""

    model_config = ConfigDict(extra="forbid")

    image: str = "macrohard-sandbox:latest"
    network: bool = False
    # Sandboxes run as the workdir's owner; when that is root, as this uid instead...
    unprivileged_uid: int = Field(default=10001, gt=0)
    # ...unless this is set, and then as root (still with no capabilities).
    allow_root: bool = False
    read_only: bool = True  # the root file system; /tmp is a tmpfs either way
    no_new_privileges: bool = True
    cap_add: list[str] = Field(default_factory=list)  # every capability is dropped, then these added
    init: bool = True
    # Limits; 0 means none.
    memory: str = "1g"
    cpus: float = Field(default=1.0, ge=0)
    pids_limit: int = Field(default=256, ge=0)
    tmpfs_size: str = "64m"  # /tmp, and /dev/shm gets the same
    timeout_s: float = Field(default=120.0, gt=0)
    output_limit_bytes: int = Field(default=64_000, ge=2)

    @field_validator("memory", "tmpfs_size")
    @classmethod
    def _size(cls, v: str) -> str:
        size_bytes(v)
        return v.strip()

    @field_validator("cap_add")
    @classmethod
    def _caps(cls, v: list[str]) -> list[str]:
        return [c.strip().upper().removeprefix("CAP_") for c in v if c.strip()]

    def weakened(self, than: SandboxSettings | None = None, was: str = "the run started with") -> list[str]:
        """One sentence per setting that is weaker than the hardened default (or than `than`, which `was` names)."""
        d = than or SandboxSettings()
        out: list[str] = []
        if than is not None:
            return self._weaker_than(than, was)
        if self.network:
            out.append("network = true: sandboxed code can reach the host's network and the internet")
        if self.allow_root:
            out.append("allow_root = true: sandboxes on root-owned worktrees run as root")
        if not self.read_only:
            out.append("read_only = false: sandboxed code can write the container's root file system")
        if not self.no_new_privileges:
            out.append("no_new_privileges = false: setuid programs in the image can gain privileges")
        if self.cap_add:
            out.append(f"cap_add = {self.cap_add}: sandboxed code gets these capabilities")
        if not self.init:
            out.append("init = false: killed commands can leave zombie processes behind")
        for name, value, default in (
            ("memory", size_bytes(self.memory), size_bytes(d.memory)),
            ("cpus", self.cpus, d.cpus),
            ("pids_limit", self.pids_limit, d.pids_limit),
            ("tmpfs_size", size_bytes(self.tmpfs_size), size_bytes(d.tmpfs_size)),
        ):
            shown = getattr(self, name)
            if value == 0:
                out.append(f"{name} = {shown!r}: no limit")
            elif value > default:
                out.append(f"{name} = {shown!r}: limit raised above the default {getattr(d, name)!r}")
        return out

    def _weaker_than(self, before: SandboxSettings, was: str) -> list[str]:
        """What these settings allow that `before` did not: a resumed run must not quietly loosen its sandbox
        (nor a case.toml macrohard.toml's); `was` says whose `before` is: "the run started with"."""
        out: list[str] = []
        for flag, loose in (("network", True), ("allow_root", True), ("read_only", False),
                            ("no_new_privileges", False), ("init", False)):
            if getattr(self, flag) == loose and getattr(before, flag) != loose:
                out.append(f"{flag} = {str(loose).lower()} ({was} {str(not loose).lower()})")
        added = sorted(set(self.cap_add) - set(before.cap_add))
        if added:
            out.append(f"cap_add gains {added}")
        if self.image != before.image:
            out.append(f"image = {self.image!r} ({was} {before.image!r})")
        for name, now, then in (
            ("memory", size_bytes(self.memory), size_bytes(before.memory)),
            ("cpus", self.cpus, before.cpus),
            ("pids_limit", self.pids_limit, before.pids_limit),
            ("tmpfs_size", size_bytes(self.tmpfs_size), size_bytes(before.tmpfs_size)),
            ("timeout_s", self.timeout_s, before.timeout_s),
        ):
            if then and (now == 0 or now > then):
                out.append(f"{name} = {getattr(self, name)!r} ({was} {getattr(before, name)!r})")
        return out


class DependencySettings(BaseModel):
    """Third-party packages a product may use, fetched by the orchestrator, never the sandbox."""

    model_config = ConfigDict(extra="forbid")

    # The index to resolve from; None: whatever the user's pip configuration names (PyPI by default).
    index_url: str | None = None
    # Project names (globs) a product may depend on; empty allows any that is not denied.
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    # Wheels, resolutions and installed sets, kept across runs.
    cache: Path = Field(default_factory=lambda: Path(os.path.expanduser("~/.cache/macrohard/dependencies")))
    # The sandbox's Python and platform: wheels are chosen for it, not for the host.
    python_version: str = "3.11"
    platforms: list[str] = Field(default_factory=lambda: ["manylinux2014_x86_64", "manylinux_2_17_x86_64",
                                                          "manylinux_2_28_x86_64", "linux_x86_64"])
    timeout_s: float = Field(default=300.0, gt=0)
    # Each wheel as fetched, and a set of packages as installed (its wheels' contents, read from
    # their zip directories before anything is unpacked): the host's disk, and every product image.
    max_wheel_mb: float = Field(default=512.0, gt=0)
    max_installed_mb: float = Field(default=2048.0, gt=0)

    @field_validator("index_url")
    @classmethod
    def _no_password(cls, v: str | None) -> str | None:
        if v and urlsplit(v).password is not None:
            raise ValueError("must not hold a user and password; configure them in pip's own configuration")
        return v

    @field_validator("cache", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(os.path.expanduser(v)) if isinstance(v, str) else v


class StorageSettings(BaseModel):
    """Where runs keep their state: SQLite in each run folder (the default), or a PostgreSQL database.

    With a postgresql:// URL, LangGraph's checkpoints and the run records live in that
    database, so any machine that sees the run folders (shared storage) and the database
    can resume any run. The password never goes in the URL (it would be recorded with
    the run's settings): libpq reads it from PGPASSWORD or ~/.pgpass.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL (leave it out for SQLite in each run folder)")
        if parts.password is not None:
            raise ValueError("must not hold a password; put it in PGPASSWORD or ~/.pgpass")
        return v


class SecretsSettings(BaseModel):
    """Variables whose values are secrets whatever their names (beside the secret-named ones)."""

    model_config = ConfigDict(extra="forbid")

    env: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MACROHARD_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    # Per-role overrides of `model`, e.g. [roles.engineer] model = "gpt-4.1".
    roles: dict[str, ModelSettings] = Field(default_factory=dict)
    # Prices by model name, e.g. [prices."gpt-4.1"] input = 2.0, output = 8.0.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    roles_dir: Path | None = None  # None: ./roles if present, else the bundled roles
    workspaces: Path = Path("workspaces")
    max_attempts: int = Field(default=3, ge=1)
    # The most tickets a plan may hold: a larger plan is refused (make tickets larger).
    max_tickets: int = Field(default=40, ge=1)
    # Gates where the run waits for a person: "plan" (after planning), "deploy" (before tagging).
    approve: list[Literal["plan", "deploy"]] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    max_parallel: int = Field(default=2, ge=1)
    # What products are built with (see macrohard/stacks.py); None: the product manager's
    # choice (describe_product), else python.
    stack: str | None = None
    # The verdict's test run, in a fresh read-only sandbox. It must write a JUnit XML
    # report to {report}; a ticket passes on that report, not on the exit code alone.
    # The default keeps the product from configuring or shadowing the runner: no plugin
    # autoload, no cwd ahead of site-packages (python3 -P, the product appended to
    # sys.path), and no addopts from any ini file.
    test_command: str = DEFAULT_TEST_COMMAND
    # Start test_command in each verdict's sandbox before the tree is there, so its
    # start-up is done when the verdict begins. Only for a command that reads one line
    # of standard input before it looks at the workspace, as the default does.
    # None: true for the default command only.
    test_command_warm: bool | None = None
    # Tests no role ever sees, run like the verdict on main before the release.
    acceptance: Path | None = None
    # With acceptance tests failing: tag anyway and report it (false: no tag).
    acceptance_tags_anyway: bool = False
    workspace: TreeLimits = Field(default_factory=TreeLimits)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dependencies: DependencySettings = Field(default_factory=DependencySettings)
    # Simulated seconds per scripted model call, for benchmarks of the orchestration.
    scripted_latency_s: float = Field(default=0.0, ge=0)
    recursion_limit: int = Field(default=400, ge=10)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    @field_validator("test_command")
    @classmethod
    def _report(cls, v: str) -> str:
        if "{report}" not in v:
            raise ValueError("must contain {report}, where the test runner writes its JUnit XML report (pytest: --junitxml={report})")
        return v

    @field_validator("roles_dir", "workspaces", "acceptance", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(os.path.expanduser(v)) if isinstance(v, str) else v

    @field_validator("stack")
    @classmethod
    def _known_stack(cls, v: str | None) -> str | None:
        if v is not None and v not in STACKS:
            raise ValueError(f"must be one of {', '.join(sorted(STACKS))}")
        return v

    def test_command_for(self, stack: Stack) -> str:
        """The verdict's test command: the one configured, else the stack's."""
        return stack.test_command if self.test_command == DEFAULT_TEST_COMMAND else self.test_command

    def warm_tests_for(self, stack: Stack) -> bool:
        if self.test_command_warm is not None:
            return self.test_command_warm
        return stack.warm and self.test_command_for(stack) == stack.test_command

    def sandbox_image_for(self, stack: Stack) -> str:
        """The sandbox image: the one configured, else the stack's."""
        return stack.image if self.sandbox.image == SandboxSettings().image else self.sandbox.image

    @property
    def warm_tests(self) -> bool:
        return self.warm_tests_for(stack_named(self.stack or "python"))

    def model_for(self, role: str, role_file_model: str | None = None) -> ModelSettings:
        """A role's endpoint: [model], then the role file's `model:`, then [roles.<role>]."""
        chosen = self.model.model_copy(update={"model": role_file_model}) if role_file_model else self.model
        return chosen.merged(self.roles.get(role))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", "fix the file or remove it") from e
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Load settings; `overrides` are CLI flags and win over everything else."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist", "check the --config path")
        file_values = _read_toml(config_file)
    elif Path(CONFIG_FILE).is_file():
        file_values = _read_toml(Path(CONFIG_FILE))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        # Settings() reads only the environment here; the file fills in what the
        # environment left unset and flags override both.
        env_values = Settings().model_dump(exclude_unset=True)
        return Settings(**_deep_merge(_deep_merge(file_values, env_values), flags))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        source = str(config_file or CONFIG_FILE)
        raise ConfigError(
            # pydantic prefixes a validator's own message with "Value error, ": the message is enough.
            f"bad setting {where!r}: {first['msg'].removeprefix('Value error, ')}",
            f"check {source} and MACROHARD_* environment variables",
        ) from e
