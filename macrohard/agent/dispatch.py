"""Running one tool call: its arguments checked, its failure turned into text for the model."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import ValidationError

from macrohard.agent.tools import Tool, ToolError
from macrohard.llm.base import ToolCall

MAX_TOOL_RESULT_CHARS = 12_000


def dispatch(tools: Mapping[str, Tool], call: ToolCall) -> tuple[bool, str]:
    """(ok, result) of a call; a bad name, bad arguments or a tool's refusal is an error message."""
    tool = tools.get(call.name)
    if tool is None:
        return False, f"error: there is no tool {call.name!r}; available: {', '.join(tools)}"
    try:
        raw = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as e:
        return False, f"error: the arguments are not valid JSON ({e.msg} at position {e.pos}); send a JSON object"
    except RecursionError:
        return False, "error: the arguments are nested too deeply; send a flat JSON object"
    if not isinstance(raw, dict):
        return False, "error: the arguments must be a JSON object"
    try:
        args = tool.Args.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'arguments'}: {x['msg']}" for x in e.errors())
        return False, f"error: bad arguments for {call.name}: {problems}"
    try:
        return True, tool.run(args)
    except ToolError as e:
        return False, f"error: {e}"
    except (OSError, UnicodeDecodeError) as e:
        return False, f"error: {call.name} failed: {e}"


def clip_result(result: str) -> str:
    """A result cut to MAX_TOOL_RESULT_CHARS: its start and its end, which matter most."""
    if len(result) <= MAX_TOOL_RESULT_CHARS:
        return result
    half = MAX_TOOL_RESULT_CHARS // 2
    return f"{result[:half]}\n... [{len(result) - 2 * half} characters omitted] ...\n{result[-half:]}"


def replayable(call: ToolCall) -> ToolCall:
    """The call as later requests carry it: arguments a server can parse (vLLM parses replayed ones)."""
    try:
        if isinstance(json.loads(call.arguments or "{}"), dict):
            return call
    except (ValueError, RecursionError):
        pass
    note = f"{len(call.arguments)} characters that were not a JSON object; the call was not run"
    return call.model_copy(update={"arguments": json.dumps({"invalid_arguments": note})})
