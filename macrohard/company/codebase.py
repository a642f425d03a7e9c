"""A bounded map of an existing codebase, for the product manager to plan a change against.

Read from git's objects at the base (never a working tree): the files (all of them for a
small repository, the folders with counts and the first files of each for a large one),
each Python module's top-level classes and functions, and how the existing suite does at
the base. It stops at a size limit however large the repository is, saying what it left out.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable

from macrohard.models import TestReport
from macrohard.workspace.git import GitWorkspace

MAP_CHARS = 8000  # the whole map
LIST_ALL_FILES = 150  # up to this many files, every path is listed
FILES_PER_FOLDER = 8  # beyond it, the first few of each folder
SYMBOL_FILE_BYTES = 200_000  # a larger module is listed without its symbols
SHOWN_FAILURES = 10


def codebase_map(
    workspace: GitWorkspace, sha: str, baseline: TestReport | None, test_command: str,
    is_test_file: Callable[[str], bool], limit: int = MAP_CHARS,
) -> str:
    files = workspace.tree_files(sha)
    parts = [f"The repository you change already has {len(files)} files (at commit {sha[:12]})."]
    parts.append(_clip(_suite(baseline, test_command, sum(1 for f in files if is_test_file(f))), limit // 8))
    parts.append("Files:\n" + _clip(_files(files), limit // 2))
    head = "\n\n".join(parts)
    symbols = _symbols(workspace, sha, [f for f in files if f.endswith(".py") and not is_test_file(f)],
                       max(0, limit - len(head) - 200))
    if symbols:
        head += "\n\nTop-level classes and functions of its Python modules:\n" + symbols
    return head


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a line, saying how much was left out."""
    if len(text) <= limit:
        return text
    kept = text[:limit].rsplit("\n", 1)[0]
    return f"{kept}\n... ({text.count(chr(10)) - kept.count(chr(10))} more lines not shown: use list_files)"


def _suite(baseline: TestReport | None, command: str, test_files: int) -> str:
    if baseline is None:
        return "It has no tests the verdict runs yet." if not test_files else "Its suite was not run."
    if not baseline.report_found:
        return (f"Its test suite ({test_files} test files) did not run at the base: {baseline.reason}. "
                "Tickets must leave it no worse.")
    failing = baseline.failed_ids
    text = f"Its test suite at the base: {baseline.tests} tests, {len(baseline.passed_ids)} passed"
    if failing:
        shown = ", ".join(failing[:SHOWN_FAILURES]) + (f" and {len(failing) - SHOWN_FAILURES} more" if len(failing) > SHOWN_FAILURES else "")
        text += f", {len(failing)} already failing ({shown}); those are known and not blamed on a ticket"
    return text + ". Every test that passes now must still pass after each ticket."


def _files(files: list[str]) -> str:
    if len(files) <= LIST_ALL_FILES:
        return "\n".join(f"- {f}" for f in files) or "(none)"
    folders = Counter(f.split("/", 1)[0] if "/" in f else "." for f in files)
    lines = []
    for folder, count in sorted(folders.items()):
        inside = [f for f in files if (f.split("/", 1)[0] if "/" in f else ".") == folder]
        shown = ", ".join(inside[:FILES_PER_FOLDER]) + (f", ... ({count - FILES_PER_FOLDER} more)" if count > FILES_PER_FOLDER else "")
        lines.append(f"- {folder}/ ({count} files): {shown}")
    return "\n".join(lines)


def _symbols(workspace: GitWorkspace, sha: str, modules: list[str], budget: int) -> str:
    lines: list[str] = []
    used = 0
    for i, path in enumerate(modules):
        data = workspace.show(sha, path)
        if data is None or len(data) > SYMBOL_FILE_BYTES:
            continue
        try:
            tree = ast.parse(data.decode("utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        names = [("class " if isinstance(n, ast.ClassDef) else "def ") + n.name for n in tree.body
                 if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_")]
        if not names:
            continue
        line = _clip(f"- {path}: {', '.join(names)}", 400)
        if used + len(line) > budget:
            lines.append(f"- ... {len(modules) - i} more modules not shown (read them with read_file)")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)
