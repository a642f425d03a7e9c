"""A case's case.toml: the few keys of macrohard.toml a case may set, read and checked.

A suite (or a batch's case folder) may come from anywhere, so its case.toml is an
allow-list, not macrohard.toml's full set: a case tunes how hard the company tries and
within what limits (attempts, tickets, budget, stack, the model's name and sampling,
tighter sandbox or tree limits, its own roles). It never says where requests go or which
secret is sent with them (`base_url`, `api_key_env`), what the host fetches or stores
(`dependencies`, `storage`), which values count as secrets, what a token costs, or what
the eval decides for every case (`acceptance`, `workspaces`, `approve`). Those stay with
whoever runs the eval, in macrohard.toml.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from macrohard.errors import ConfigError

CASE_SETTINGS = "case.toml"
# What the eval decides for every case.
EVAL_OWNED = ("acceptance", "workspaces", "approve")
# A model table's keys a case may set: which model, and how it is asked; not where, nor with which key.
MODEL_KEYS = frozenset({"model", "temperature", "timeout_s", "max_retries", "context_window", "max_tokens",
                        "tool_choice", "stream", "drop"})
# Top-level keys a case may set whole. [sandbox] and [workspace] may only tighten macrohard.toml's
# (eval/runner.py checks them against it); roles_dir must be inside the case's folder.
CASE_KEYS = frozenset({"max_attempts", "max_tickets", "max_parallel", "budget", "stack", "scripted_latency_s",
                       "recursion_limit", "workspace", "test_command", "test_command_warm", "sandbox", "roles_dir"})


def refused_keys(values: dict[str, Any]) -> list[str]:
    """The keys of a case.toml a case may not set, dotted (`model.base_url`, `roles.engineer.api_key_env`)."""
    out: list[str] = []
    for key, value in values.items():
        if key == "model" and isinstance(value, dict):
            out += [f"model.{k}" for k in value if k not in MODEL_KEYS]
        elif key == "roles" and isinstance(value, dict):
            for role, table in value.items():
                keys = table if isinstance(table, dict) else {"": None}
                out += [f"roles.{role}{'.' + k if k else ''}" for k in keys if k not in MODEL_KEYS]
        elif key not in CASE_KEYS:
            out.append(key)
    return out


def _roles_dir(value: str, folder: Path) -> str:
    """The case's roles folder, absolute; it must be inside the case (role files are read by the host)."""
    where = (folder / value).resolve()
    if not where.is_relative_to(folder.resolve()):
        raise ConfigError(f"{CASE_SETTINGS} sets roles_dir = {value!r}, which is outside the case's folder; "
                          "a case's roles must be in its folder")
    links = sorted(p.name for p in where.glob("*.md") if p.is_symlink())
    if links:
        raise ConfigError(f"{CASE_SETTINGS}'s roles_dir holds links ({', '.join(links)}); "
                          "a case's role files must be regular files in its folder")
    return str(where)


def read_case_toml(path: Path, folder: Path) -> dict[str, Any]:
    """case.toml's values, roles_dir made absolute; ConfigError names any key a case may not set."""
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{CASE_SETTINGS} is not valid TOML: {e}") from None
    owned = sorted(set(values) & set(EVAL_OWNED))
    if owned:
        raise ConfigError(f"{CASE_SETTINGS} sets {', '.join(owned)}, which the eval decides for every case")
    refused = refused_keys(values)
    if refused:
        raise ConfigError(f"{CASE_SETTINGS} sets {', '.join(refused)}, which a case may not set (where requests go, "
                          "which secret is sent, what the host fetches, stores or counts)",
                          "set it in macrohard.toml if you mean it")
    if isinstance(values.get("roles_dir"), str):
        values["roles_dir"] = _roles_dir(values["roles_dir"], folder)
    return values
