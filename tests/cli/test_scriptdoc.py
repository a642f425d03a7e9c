"""docs/script-format.md is what the generator writes from the tools, roles and script loader of today."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from macrohard.agent.tools import TOOL_NAMES, AddTicket
from macrohard.cli import scriptdoc

PAGE = Path(__file__).resolve().parents[2] / "docs" / "script-format.md"


def test_the_committed_page_is_what_the_generator_writes():
    assert PAGE.read_text() == scriptdoc.render(), (
        "docs/script-format.md is out of date: python3 -m macrohard.cli.scriptdoc > docs/script-format.md")


def test_every_tool_and_each_of_its_arguments_is_documented():
    page = scriptdoc.render()
    for tool in scriptdoc.TOOLS:
        assert tool.name in TOOL_NAMES and f"### `{tool.name}`" in page
        section = page.split(f"### `{tool.name}`")[1].split("\n### ")[0]
        for name in tool.Args.model_fields:
            assert f"| `{name}` |" in section, (tool.name, name)
    add_ticket = page.split("### `add_ticket`")[1].split("\n### ")[0]
    assert "| `acceptance_criteria` | list of text | yes | checks a test can make, one per item; at least one item |" in add_ticket
    assert '| `depends_on` | list of text | no (default `[]`) |' in add_ticket


def test_a_changed_tool_changes_the_page(monkeypatch: pytest.MonkeyPatch):
    class Args(BaseModel):
        title: str = Field(min_length=1, description="what the ticket is, in a few words")
        description: str
        acceptance_criteria: list[str]
        priority: int = Field(2, description="1 is the most urgent")

    before = scriptdoc.render()
    monkeypatch.setattr(AddTicket, "Args", Args)
    after = scriptdoc.render()
    assert after != before
    assert "| `priority` | integer | no (default `2`) | 1 is the most urgent |" in after
    assert "| `title` | text | yes | what the ticket is, in a few words; not empty |" in after


def test_a_tool_the_page_does_not_know_stops_the_generator(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scriptdoc, "TOOL_NAMES", TOOL_NAMES | {"deploy_to_production"})
    with pytest.raises(RuntimeError, match="tool list is out of date"):
        scriptdoc.render()


def test_what_each_role_must_do_is_on_the_page():
    page = scriptdoc.render()
    for role in ("product_manager", "engineer", "tester", "deployer"):
        assert f"### {role}" in page
    assert "Call `add_ticket` at least once" in page and "fail on the ticket's base" in page
