"""Stacks: what a product is built with, and everything that follows from it.

A stack names the sandbox image its code runs in (built from Debian's packages, like the
base image), the verdict's test command and the JUnit XML report it writes, the
manifest where a product declares third-party packages (and whether the orchestrator
can fetch them), the lines of its .gitignore, and what the roles are told is installed.
The stack is chosen by configuration (`stack = "node"` or `--stack`), else by the product
manager (`describe_product`), else Python. No I/O here.
"""

from __future__ import annotations

from pydantic import BaseModel

from macrohard.errors import ConfigError

# Where a stack's sandbox mounts what the orchestrator provides.
DEPS_DIR = "/deps"  # third-party packages, installed by the orchestrator, read-only
CACHE_DIR = "/cache"  # a ticket's cache, kept across its attempts (outside the /tmp tmpfs)
REPORTER = "/usr/local/lib/macrohard/junit-reporter.mjs"  # node --test's JUnit reporter, in the node image

PYTHON_TEST_COMMAND = (
    # pytest is imported before one line is read from standard input: a verdict starts the
    # command ahead (warm) and releases it once the tree is in place, so the import is off
    # the critical path; run normally, its input is empty and it goes on at once. Nothing
    # of the product is on sys.path until after that line. -E: no PYTHON* variable steers the
    # runner itself (the product's packages, on PYTHONPATH for what its tests start, come
    # after the product and the runner's own, so none stands in for pytest). pytest's own
    # plugins, and what its first run would import lazily, are imported ahead too: a quarter of
    # a small suite's run (from the image's system paths: the product is not on sys.path yet).
    "env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -E -s -P -c "
    "'import os, sys, pytest, pdb, faulthandler, xml.etree.ElementTree; "
    "[__import__(\"_pytest.\" + n) for n in getattr(__import__(\"_pytest.config\").config, \"default_plugins\", ())]; "
    "sys.stdin.readline(); sys.path.append(os.getcwd()); "
    # Once pytest has written its report, the process ends at once: the interpreter's teardown
    # (a third of a small suite's run) is skipped, and no thread a test left running holds it open.
    f"sys.path.append(\"{DEPS_DIR}\"); code = pytest.main(sys.argv[1:]); sys.stdout.flush(); sys.stderr.flush(); "
    "os._exit(int(code))' "
    "-q -p no:cacheprovider -p no:doctest -o addopts= --junitxml={report}"
)
# The reporter lives in the image, outside the product: a product cannot replace it.
NODE_TEST_COMMAND = f"node --test --test-reporter={REPORTER} --test-reporter-destination={{report}}"


class Stack(BaseModel):
    name: str
    image: str  # the sandbox image, unless [sandbox] image names another
    packages: list[str]  # Debian packages beyond the base image's, for the image's build
    test_command: str
    warm: bool  # the test command reads one line before it looks at the workspace (see Sandbox.warm)
    manifest: list[str]  # files a product declares third-party packages in
    fetches_packages: bool  # whether the orchestrator fetches what the manifest declares
    gitignore: list[str]
    environment: str  # what the roles are told: the sandbox's tools and how tests run
    tests: str  # what the tester is told: where tests go and how they are written
    cache_env: dict[str, str] = {}  # variables pointing tools at the ticket's cache


PYTHON = Stack(
    name="python",
    image="macrohard-sandbox:latest",
    packages=[],
    test_command=PYTHON_TEST_COMMAND,
    warm=True,
    manifest=["requirements.txt", "pyproject.toml"],
    fetches_packages=True,
    gitignore=["__pycache__/", "*.pyc", ".pytest_cache/"],
    environment=(
        "Python 3.11 with pytest (`python3 -m pytest`), git and coreutils; no network. Third-party packages: list "
        "them in requirements.txt (plain requirements such as `requests>=2.31`); before your next command the "
        f"orchestrator fetches them (wheels only) and installs them in {DEPS_DIR}, which is on PYTHONPATH. A package "
        "that cannot be had is an error you see: choose another, or the standard library."
    ),
    tests="pytest tests under tests/ (test_<topic>.py)",
    cache_env={"XDG_CACHE_HOME": CACHE_DIR},
)
NODE = Stack(
    name="node",
    image="macrohard-sandbox-node:latest",
    packages=["nodejs"],
    test_command=NODE_TEST_COMMAND,
    warm=False,
    manifest=["package.json"],
    fetches_packages=False,
    gitignore=["node_modules/", "npm-debug.log*"],
    environment=(
        "Node.js 18 (`node`, its built-in test runner `node --test`), git and coreutils; no network and no npm "
        "registry: use Node's standard library (node:fs, node:http, node:test, node:assert...). Modules are CommonJS "
        "(`require`) unless package.json says \"type\": \"module\"."
    ),
    tests="node:test tests under test/ (<topic>.test.js), run by `node --test`",
    cache_env={"XDG_CACHE_HOME": CACHE_DIR, "NODE_COMPILE_CACHE": f"{CACHE_DIR}/node"},
)
STACKS = {stack.name: stack for stack in (PYTHON, NODE)}
DEFAULT = PYTHON.name


def stack_named(name: str) -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        raise ConfigError(f"unknown stack {name!r}", f"stacks are: {', '.join(sorted(STACKS))}") from None
