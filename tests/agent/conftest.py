"""Running one agent session on a scripted (or fake) model, in a temporary worktree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from macrohard.agent.loop import AgentLoop, AgentResult
from macrohard.agent.tools import Confined, EditFile, ListFiles, ReadFile, WriteFile
from macrohard.llm.base import ChatModel
from macrohard.llm.scripted import ScriptedModel, load_script
from macrohard.roles import Role
from macrohard.transcript.log import Event, TranscriptLog, read_events


@dataclass
class Session:
    result: AgentResult
    events: list[Event]
    root: Path

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


Runner = Callable[..., Session]


@pytest.fixture
def run_agent(tmp_path: Path) -> Runner:
    """run_agent(script, max_steps=10, wrap=None, **loop_kwargs): one engineer session on T-1."""
    count = 0

    def run(
        script: str | dict[str, Any], max_steps: int = 10, wrap: Callable[[ChatModel], ChatModel] | None = None,
        tools: tuple[str, ...] = ("list_files", "read_file", "write_file", "edit_file"), prompt: str = "do it",
        **loop_kwargs: Any,
    ) -> Session:
        nonlocal count
        count += 1
        folder = tmp_path / f"session-{count}"
        folder.mkdir()
        text = script if isinstance(script, str) else yaml.safe_dump(script)
        (folder / "s.yaml").write_text(text)
        root = tmp_path / "wt"
        root.mkdir(exist_ok=True)
        fs = Confined(root)
        every = {"list_files": ListFiles(fs), "read_file": ReadFile(fs), "write_file": WriteFile(fs), "edit_file": EditFile(fs)}
        role = Role(name="engineer", tools=list(tools), max_steps=max_steps, prompt="You code.", path=folder)
        log = TranscriptLog(folder / "t.jsonl", "r")
        model: ChatModel = ScriptedModel(load_script(folder / "s.yaml"))
        if wrap is not None:
            model = wrap(model)
        loop = AgentLoop(role, model, [every[t] for t in tools], log, task="T-1", ticket="T-1", **loop_kwargs)
        result = loop.run(prompt)
        events = list(read_events(folder / "t.jsonl")) if (folder / "t.jsonl").exists() else []
        return Session(result, events, root)

    return run
