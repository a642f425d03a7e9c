"""What a tool is: a name, a description, pydantic arguments and a run that returns text.

A tool's failure is a `ToolError`: its message goes back to the model, which can
correct itself; it never ends the run.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from macrohard.llm.base import ToolSpec


class ToolError(Exception):
    """A tool refused or failed; the message is for the model."""


class Tool(Protocol):
    name: ClassVar[str]
    description: str  # a class's, or an instance's own (a run_shell that names its stack)
    Args: ClassVar[type[BaseModel]]

    def run(self, args: Any) -> str: ...


def spec_of(tool: Tool) -> ToolSpec:
    # A copy: the schema is built once per tool class, and a spec may be changed by its user.
    spec = _spec_of(type(tool)).model_copy(deep=True)
    spec.description = tool.description
    return spec


@functools.cache
def _spec_of(tool: type[Tool]) -> ToolSpec:
    # Building a JSON schema costs milliseconds, and every agent loop asks for each tool's.
    schema = tool.Args.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=tool.name, description=tool.description, parameters=schema)
