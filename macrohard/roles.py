"""Roles as files: front matter (tools, step limit, model) and a system prompt."""

from __future__ import annotations

from pathlib import Path

import frontmatter
from pydantic import BaseModel, Field, ValidationError, field_validator

from macrohard._resources import resource_dir
from macrohard.errors import ConfigError
from macrohard.territory import Territory, default_territories

REQUIRED_ROLES = ("product_manager", "engineer", "tester", "deployer")


class Role(BaseModel):
    name: str
    tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=30, ge=1)
    # A model name for this role; [roles.<name>] in macrohard.toml wins over it.
    model: str | None = None
    # Glob patterns of what the role may change (see macrohard.territory); without
    # them a bundled role gets its default and any other role may change nothing.
    territory: list[str] = Field(default_factory=list)
    prompt: str
    path: Path

    @field_validator("territory")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return Territory(patterns=v).patterns


def default_roles_dir() -> Path:
    local = Path("roles")
    return local if local.is_dir() else resource_dir("roles")


def load_role(path: Path) -> Role:
    try:
        post = frontmatter.load(str(path))
    except Exception as e:  # the YAML parser raises several unrelated types
        raise ConfigError(f"role file {path} has bad front matter: {e}", "fix the YAML between the --- lines") from e
    meta = dict(post.metadata)
    meta.setdefault("name", path.stem)
    if meta.get("territory") is None:
        meta["territory"] = default_territories().get(str(meta["name"]), [])
    try:
        return Role(prompt=post.content.strip(), path=path, **meta)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"role file {path}: {where}: {first['msg']}", "see roles/engineer.md for the format") from e


def load_roles(roles_dir: Path | None = None, *, known_tools: set[str] | None = None) -> dict[str, Role]:
    """Load every `*.md` in the folder; the four company roles must be there."""
    folder = roles_dir or default_roles_dir()
    if not folder.is_dir():
        raise ConfigError(f"roles folder {folder} does not exist", "point roles_dir at a folder of role files")
    roles = {r.name: r for r in (load_role(p) for p in sorted(folder.glob("*.md")))}
    missing = [r for r in REQUIRED_ROLES if r not in roles]
    if missing:
        raise ConfigError(
            f"roles folder {folder} has no role {', '.join(missing)}",
            f"add {', '.join(m + '.md' for m in missing)} (copy them from the bundled roles/)",
        )
    if known_tools is not None:
        for role in roles.values():
            unknown = sorted(set(role.tools) - known_tools)
            if unknown:
                raise ConfigError(
                    f"role file {role.path} names unknown tool {', '.join(unknown)}",
                    f"tools are: {', '.join(sorted(known_tools))}",
                )
    return roles
