"""Tool calls a model wrote as text, recovered as calls.

Some endpoints send a model's tool calls in `content` with no `tool_calls` (Qwen2.5-Coder
through Ollama or vLLM writes bare JSON; other local models use `<tool_call>` tags or a
fenced block). The loop recovers them, but only calls to tools the role has: text that
merely looks like JSON, or names an unknown tool, stays text.

Recognised forms, alone or with prose around them:

    {"name": "read_file", "arguments": {"path": "a.py"}}        (arguments may be a JSON string)
    {"name": "read_file", "parameters": {...}}                   (Llama style)
    {"type": "function", "function": {"name": ..., "arguments": ...}}
    {"function": "read_file", "arguments": {...}}
    a list of these, a ```json fenced block of them, or <tool_call>...</tool_call> around them
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from macrohard.llm.base import ToolCall

_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_JSON_START = re.compile(r"[\[{]\s*[{\"]")  # an object with a key, or a list of objects
_FENCE = re.compile(r"```[ \t]*(?:json|tool_call|tool_code)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
# Only these keys may appear in a call object: a tool's schema echoed back, or a config
# file with a "name", is not a call.
_CALL_KEYS = {"name", "arguments", "parameters", "type", "function", "id"}
# Bare objects are looked for at most this many times: a long answer full of braces
# must not cost quadratic time.
_MAX_BARE_TRIES = 200
_decoder = json.JSONDecoder()


def recover_calls(content: str | None, known: Collection[str], id_prefix: str) -> tuple[list[ToolCall], str | None]:
    """The calls to known tools written in content, and the content without them (None if nothing is left)."""
    if not content or not content.strip():
        return [], content
    found: list[tuple[int, int, list[tuple[str, str]]]] = []  # (start, end, calls) of each span
    blocks: list[tuple[int, int, None]] = []  # every tagged or fenced block, a call or not
    for pattern in (_TAG, _FENCE):
        for match in pattern.finditer(content):
            if _overlaps(blocks, match.start(), match.end()):
                continue
            blocks.append((match.start(), match.end(), None))
            calls = _calls_in(match.group(1), known)
            if calls:
                found.append((match.start(), match.end(), calls))
    if not found:
        # A block that held something else (an example) is no place to look for bare calls.
        found = [span for span in _bare(content, known) if not _overlaps(blocks, span[0], span[1])]
    if not found:
        return [], content
    found.sort()
    calls = [
        ToolCall(id=f"{id_prefix}_{i}", name=name, arguments=arguments, recovered=True)
        for i, (name, arguments) in enumerate(c for _, _, span in found for c in span)
    ]
    rest, last = [], 0
    for start, end, _ in found:
        rest.append(content[last:start])
        last = end
    rest.append(content[last:])
    left = "".join(rest).strip()
    return calls, left or None


def _overlaps(found: list[tuple[int, int, Any]], start: int, end: int) -> bool:
    return any(start < e and s < end for s, e, _ in found)


def _calls_in(text: str, known: Collection[str]) -> list[tuple[str, str]]:
    """Every call in a block: JSON values one after another, each a call or a list of calls."""
    calls: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            return calls
        try:
            value, pos = _decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):  # malformed, or nested past Python's stack
            return calls
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, known)
            if call is None:
                return []  # a block that is not all calls is an example, not a call
            calls.append(call)


def _bare(content: str, known: Collection[str]) -> list[tuple[int, int, list[tuple[str, str]]]]:
    """Call objects (or lists of them) written in the text itself."""
    found: list[tuple[int, int, list[tuple[str, str]]]] = []
    pos = tries = 0
    while tries < _MAX_BARE_TRIES:
        match = _JSON_START.search(content, pos)
        if match is None:
            break
        tries += 1
        try:
            value, end = _decoder.raw_decode(content, match.start())
        except (ValueError, RecursionError):  # malformed, or nested past Python's stack
            pos = match.start() + 1
            continue
        items = value if isinstance(value, list) else [value]
        calls = [_as_call(item, known) for item in items]
        if items and all(c is not None for c in calls):
            found.append((match.start(), end, [c for c in calls if c is not None]))
        pos = end
    return found


def _as_call(item: Any, known: Collection[str]) -> tuple[str, str] | None:
    """(name, arguments as JSON text) of a call object naming a known tool, else None."""
    if not isinstance(item, dict) or not item or not set(item) <= _CALL_KEYS:
        return None
    if isinstance(item.get("function"), dict):
        outer = item
        item = item["function"]
        if not isinstance(item, dict) or not set(item) <= _CALL_KEYS or set(outer) - {"type", "function", "id"}:
            return None
    name = item.get("name", item.get("function"))
    if not isinstance(name, str) or name not in known:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        return name, arguments  # already JSON text (or malformed: the loop answers that)
    if not isinstance(arguments, dict):
        return None
    return name, json.dumps(arguments, ensure_ascii=False)
