"""Territories at work: the file tools refuse writes outside a role's, and each commit
puts back what a role changed outside it (its shell can change anything).

What was put back is a transcript event naming the files and their owners, and the
role's next attempt is told. Sections of shared files that configure the test runner
(pyproject.toml's [tool.pytest...], setup.cfg's [tool:pytest]) belong to whoever owns
pytest.ini, though the rest of those files is the engineer's.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
import tomllib
from pathlib import Path

from macrohard.agent.tools import Confined, ToolError
from macrohard.roles import Role
from macrohard.territory import RUNNER_SECTIONS, Territory, owner_of
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace

RUNNER_CONFIG = "pytest.ini"  # whoever owns this owns the runner's sections of shared files


class TerritoryGuard:
    def __init__(self, roles: dict[str, Role], workspace: GitWorkspace, transcript: TranscriptLog) -> None:
        self.territories = {name: Territory(patterns=role.territory) for name, role in roles.items()}
        self.workspace = workspace
        self.transcript = transcript

    def allows(self, role: str, path: str) -> bool:
        return self.territories[role].allows(path)

    def is_test_file(self, path: str) -> bool:
        """Whether the role that owns the runner's configuration owns this path (tests, conftest, ...)."""
        owner = owner_of(RUNNER_CONFIG, self.territories)
        return owner is not None and self.territories[owner].allows(path)

    def refusal(self, role: str, path: str) -> str | None:
        """Why `role` may not write `path` (for the file tools), or None when it may."""
        if self.allows(role, path):
            return None
        owner = owner_of(path, self.territories)
        whose = f"the {owner}'s" if owner else "no role's"
        advice = (
            "If a test contradicts the ticket, call dispute_test with your reason instead of changing it."
            if owner and self.is_test_file(path) else "Leave it to its owner."
        )
        return (
            f"{path} is in {whose} territory; as {role} you may change only: {self.territories[role].describe()}. "
            + advice
        )

    def enforce(self, role: str, root: Path, ref: str, ticket: str | None) -> list[str]:
        """Put back every change in root outside role's territory; the paths put back."""
        changes = self.workspace.pending_changes(root)
        denied = [p for p in changes if not self.allows(role, p) or self._runner_section_changed(role, root, ref, p)]
        if denied:
            self.transcript.append(
                "territory.put_back", role=role, ticket=ticket, files=denied,
                owners={p: owner_of(p, self.territories) for p in denied},
            )
        secrets = self._secrets(root, [p for p in changes if p not in denied])
        if secrets:
            # Names of the secrets only: the event must not carry what it refuses.
            self.transcript.append("secret.refused", role=role, ticket=ticket, files=secrets,
                                   reason="a secret (as it is, JSON-escaped, base64 or hex) would have been committed")
        self.workspace.put_back(root, [*denied, *secrets])
        return [*denied, *secrets]

    def _secrets(self, root: Path, paths: list[str]) -> dict[str, list[str]]:
        """The changed files that hold a secret, with the secrets' names."""
        redactor = self.transcript.redactor
        if not redactor:
            return {}
        found = {}
        for path in paths:
            data = _read(root, path)
            if data is not None and (names := redactor.find(data)):
                found[path] = names
        return found

    def _runner_section_changed(self, role: str, root: Path, ref: str, path: str) -> bool:
        section = RUNNER_SECTIONS.get(path)
        if section is None or self.allows(role, RUNNER_CONFIG):
            return False
        try:
            mode = os.lstat(root / path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            return True  # a link (or anything else) in its place could point the runner anywhere
        before = _section(path, self.workspace.show(ref, path), section)
        after = _section(path, _read(root, path), section)
        return before != after


def _read(root: Path, path: str) -> bytes | None:
    try:
        fd = Confined(root).open(path)[0]
    except ToolError:
        return None
    with open(fd, "rb") as f:
        return f.read()


def _section(path: str, data: bytes | None, section: tuple[str, ...]) -> object:
    """The runner's section of a shared file, comparable; a file that does not parse is itself."""
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace")
    try:
        if path.endswith(".toml"):
            value: object = tomllib.loads(text)
            for key in section:
                value = value.get(key) if isinstance(value, dict) else None
            return value
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        # pytest's ini parser cuts a line at a comment before it reads a section header;
        # configparser would read "[tool:pytest]#]" as a section named "tool:pytest]#".
        parser.read_string(re.sub(r"(?m)^(\s*\[[^\]#;]*\]).*$", r"\1", text))
        return dict(parser[section[0]]) if parser.has_section(section[0]) else None
    except (tomllib.TOMLDecodeError, configparser.Error):
        return ("unparsed", text)
