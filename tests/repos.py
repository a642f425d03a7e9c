"""A user's repository with history and a suite, and a scripted change to it, for runs on existing code."""

from __future__ import annotations

import subprocess
from pathlib import Path

CORE = '"""Arithmetic."""\n\n\ndef add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n'
MUL = '\n\ndef mul(a, b):\n    return a * b\n'
TESTS = "from calc.core import add, sub\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_sub():\n    assert sub(2, 3) == -1\n"
# A test that already fails in the user's repository: no ticket's doing.
KNOWN = "from calc.core import add\n\n\ndef test_add_strings():\n    assert add('a', 1) == 'a1'\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def user_repo(path: Path) -> Path:
    """Three commits on branch trunk, a suite with one known failure, and work in progress."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=trunk")
    git(path, "config", "user.name", "A User")
    git(path, "config", "user.email", "user@example.com")
    (path / "calc").mkdir()
    (path / "calc" / "__init__.py").write_text('"""calc: small arithmetic."""\n')
    (path / "calc" / "core.py").write_text(CORE.split("\n\n\ndef sub")[0] + "\n")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "calc with add")
    (path / "calc" / "core.py").write_text(CORE)
    git(path, "commit", "--quiet", "-am", "sub")
    (path / "tests").mkdir()
    (path / "tests" / "test_core.py").write_text(TESTS)
    (path / "tests" / "test_known.py").write_text(KNOWN)
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "tests")
    git(path, "tag", "v1.4.0")
    # Uncommitted work: not part of any run.
    (path / "calc" / "core.py").write_text(CORE + "\n# work in progress\n")
    (path / "notes.txt").write_text("untracked\n")
    return path


def snapshot(repo: Path) -> dict[str, str]:
    """What must not change: refs, HEAD, the index, the working tree's files."""
    files = {str(p.relative_to(repo)): p.read_bytes().hex() for p in sorted(repo.rglob("*"))
             if p.is_file() and ".git" not in p.relative_to(repo).parts}
    return {
        "refs": git(repo, "for-each-ref"),
        "head": git(repo, "symbolic-ref", "HEAD"),
        "status": git(repo, "--no-optional-locks", "status", "--porcelain"),
        "index": (repo / ".git" / "index").read_bytes().hex(),
        "files": repr(files),
        "config": (repo / ".git" / "config").read_text(),
    }


# Hidden acceptance tests of the change: the new function and the old ones.
ACCEPTANCE = Path(__file__).parent / "company" / "acceptance" / "calc"
TEST_MUL = "from calc.core import mul\n\n\ndef test_mul():\n    assert mul(3, 4) == 12\n"

SCRIPT = {
    "product_manager": {"plan": [
        {"expect": "def add, def sub", "calls": [{"read_file": {"path": "calc/core.py"}}]},
        {"calls": [{"add_ticket": {"title": "mul", "description": "Add mul(a, b) to calc/core.py, beside add and sub.",
                                   "acceptance_criteria": ["mul(6, 7) == 42"]}}]},
        {"say": "One ticket: mul."},
    ]},
    "engineer": {"T-1": [
        {"calls": [{"edit_file": {"path": "calc/core.py", "old": "    return a - b\n", "new": "    return a - b\n" + MUL}}]},
        {"say": "Added mul."},
    ]},
    "tester": {"T-1": [{"calls": [{"write_file": {"path": "tests/test_mul.py", "content": TEST_MUL}}]}, {"say": "Tested."}]},
    "deployer": {"release": [{"calls": [{"write_file": {"path": "CHANGELOG.md", "content": "# mul\n"}}]}, {"say": "Done."}]},
}
