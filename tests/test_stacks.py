"""Stacks: what each names, and what follows from the choice."""

import pytest

from macrohard.errors import ConfigError
from macrohard.stacks import DEPS_DIR, NODE, PYTHON, STACKS, stack_named
from macrohard.territory import Territory, default_territories
from macrohard.workspace.gitbase import GITIGNORE


def test_a_new_repository_ignores_every_stacks_generated_files():
    # The repository is made before the plan picks the stack: it ignores what any would make.
    ignored = GITIGNORE.splitlines()
    for stack in STACKS.values():
        assert set(stack.gitignore) <= set(ignored), stack.name


def test_every_stacks_test_command_writes_the_report_the_verdict_reads():
    for stack in STACKS.values():
        assert "{report}" in stack.test_command, stack.name
    # The Python runner puts the product's packages after the product and the runner itself.
    assert f'sys.path.append("{DEPS_DIR}")' in PYTHON.test_command and " -E " in PYTHON.test_command
    # Node's reporter is the image's, never a path inside the product.
    assert "--test-reporter=/usr/local/lib/" in NODE.test_command


@pytest.mark.parametrize("stack", list(STACKS.values()), ids=list(STACKS))
def test_the_files_a_stacks_runner_picks_up_are_the_testers(stack):
    tester = Territory(patterns=default_territories()["tester"])
    engineer = Territory(patterns=default_territories()["engineer"])
    samples = {"python": ["tests/test_a.py", "a/test_b.py", "conftest.py"],
               "node": ["test/a.js", "a.test.js", "a-test.mjs", "a_test.cjs", "test-a.js", "test.mjs"]}[stack.name]
    for path in samples:
        assert tester.allows(path) and not engineer.allows(path), path


def test_an_unknown_stack_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        stack_named("cobol")
    assert "cobol" in str(e.value) and "node" in e.value.hint and "python" in e.value.hint
