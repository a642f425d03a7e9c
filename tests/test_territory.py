"""Territories: which role may change which path; the bundled role files say the defaults."""

import pytest
from pydantic import ValidationError

from macrohard._resources import resource_dir
from macrohard.roles import load_roles
from macrohard.territory import Territory, default_territories, owner_of


def territories() -> dict[str, Territory]:
    return {name: Territory(patterns=p) for name, p in default_territories().items()}


@pytest.mark.parametrize("path,owner", [
    ("calc/ops.py", "engineer"), ("pyproject.toml", "engineer"), ("README.md", "engineer"),
    ("tests/test_ops.py", "tester"), ("conftest.py", "tester"), ("calc/conftest.py", "tester"),
    ("pytest.ini", "tester"), (".pytest.ini", "tester"), ("pytest.toml", "tester"), ("tox.ini", "tester"),
    ("pytest.py", "tester"), ("_pytest/x.py", "tester"), ("sitecustomize.py", "tester"), ("calc/x.pth", "tester"),
    ("dropper-1.0.dist-info/entry_points.txt", "tester"), ("calc/test_ops.py", "tester"),
    ("docs/PRD.md", "product_manager"), ("RELEASE_NOTES.md", "deployer"), (".gitmodules", None),
    # The files node --test picks by itself are the tester's; the product's modules are not.
    ("src/slug.test.js", "tester"), ("lib/slug-test.mjs", "tester"), ("slug_test.cjs", "tester"),
    ("test.js", "tester"), ("lib/test-slug.js", "tester"), ("index.js", "engineer"), ("lib/testing.js", "engineer"),
    ("package.json", "engineer"),
])
def test_each_path_has_the_owner_the_readme_names(path, owner):
    assert owner_of(path, territories()) == owner
    held = [name for name, t in territories().items() if t.allows(path)]
    assert held == ([owner] if owner else [])  # no path is two roles'


def test_globs_negation_and_bad_patterns():
    t = Territory(patterns=["src/**", "!src/gen/**", "*.md"])
    assert t.allows("src/a/b.py") and not t.allows("src/gen/x.py") and t.allows("NOTES.md") and not t.allows("d/NOTES.md")
    for bad in ("/etc/**", "../x", "!", ""):
        with pytest.raises(ValidationError):
            Territory(patterns=[bad])


def test_the_bundled_role_files_state_the_default_territories():
    roles = load_roles(resource_dir("roles"))
    assert {name: role.territory for name, role in roles.items()} == default_territories()
