"""The product manager's map of an existing codebase stays bounded however large the repository is."""

from macrohard.company.codebase import MAP_CHARS, codebase_map


class Tree:
    """A repository at one commit, as the map reads it (tree_files and show)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def tree_files(self, sha: str) -> list[str]:
        return sorted(self.files)

    def show(self, sha: str, path: str) -> bytes | None:
        return self.files.get(path)


def is_test(path: str) -> bool:
    return path.startswith("tests/")


def test_a_small_repository_is_mapped_whole():
    tree = Tree({"calc/core.py": b"def add(a, b):\n    return a + b\n\n\nclass Calc:\n    pass\n\n\ndef _private():\n    pass\n",
                 "tests/test_core.py": b"def test_add():\n    pass\n"})
    text = codebase_map(tree, "0" * 40, None, "pytest", is_test)  # type: ignore[arg-type]
    assert "- calc/core.py" in text and "calc/core.py: def add, class Calc" in text and "_private" not in text


def test_thousands_of_folders_and_long_names_stay_within_the_limit():
    files = {f"pkg{n:04d}/{'m' * 60}{n}.py": f"def f{n}():\n    pass\n".encode() for n in range(3000)}
    text = codebase_map(Tree(files), "0" * 40, None, "pytest", is_test)  # type: ignore[arg-type]
    assert len(text) <= MAP_CHARS + 200
    assert "more lines not shown" in text and "more modules not shown" in text
