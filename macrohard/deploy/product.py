"""The product's image: its name and labels, and each stack's default smoke check."""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable

from macrohard.models import RunSpec

PRODUCT_LABEL = "macrohard.product-image"  # "1" on every product image the orchestrator built
RUN_LABEL = "macrohard.run"
COMMIT_LABEL = "macrohard.commit"
VERSION_LABEL = "macrohard.version"
PRODUCT_NAME_LABEL = "macrohard.product"
DOCKERFILE_LABEL = "macrohard.dockerfile"  # sha256 of the Dockerfile it was built from, as rendered
DEPS_LABEL = "macrohard.deps"  # on the image of a product's packages: what was installed, on which image
STACKS = ("python", "node")
# Top-level modules that are not the product's library: packaging and test configuration.
NOT_PRODUCT = {"setup", "conftest", "noxfile", "__main__", "__init__"}


def product_name(title: str) -> str:
    """The image repository for a spec's title: lower case letters, digits and single dashes."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()  # "Über" -> "Uber"
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:64].strip("-")
    return slug or "product"


def image_version(tag: str) -> str:
    """The image tag for a release tag: v0.2.0 -> 0.2.0."""
    return tag[1:] if tag.startswith("v") else tag


def image_labels(run_id: str, commit: str, version: str, product: str, dockerfile_sha256: str) -> dict[str, str]:
    """What names a product image: found again by run, commit and Dockerfile; listed and removed by run."""
    return {
        PRODUCT_LABEL: "1",
        RUN_LABEL: run_id,
        COMMIT_LABEL: commit,
        VERSION_LABEL: version,
        PRODUCT_NAME_LABEL: product,
        DOCKERFILE_LABEL: dockerfile_sha256,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.title": product,
    }


def deps_labels(run_id: str, product: str, digest: str) -> dict[str, str]:
    """What names the image of a product's third-party packages (the base of its product images)."""
    return {PRODUCT_LABEL: "1", RUN_LABEL: run_id, PRODUCT_NAME_LABEL: product, DEPS_LABEL: digest}


def identity_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels that say an image was built from this run, commit and Dockerfile (what a resumed run looks for)."""
    return {k: labels[k] for k in (PRODUCT_LABEL, RUN_LABEL, COMMIT_LABEL, DOCKERFILE_LABEL)}


class NothingToCheck(ValueError):
    """The stack has no default smoke check for this tree."""


def default_run(stack: str, files: Iterable[str], is_test: Callable[[str], bool]) -> RunSpec:
    """The stack's smoke check when the plan did not say how the product runs.

    Python: import every top-level package of the product that is not a test; without any
    package, every top-level module (a module beside a package is more often a script,
    which an import would run). Node: load its index.js.
    """
    if stack not in STACKS:
        raise NothingToCheck(f"the stack {stack!r} has no default smoke check (known: {', '.join(STACKS)})")
    if stack == "node":
        if "index.js" not in set(files):
            raise NothingToCheck("the product has no index.js to load")
        return RunSpec(kind="library", command="node -e \"require('./index.js')\"", stack=stack, default=True)
    packages: set[str] = set()
    modules: set[str] = set()
    for path in files:
        parts = path.split("/")
        if is_test(path):
            continue
        if len(parts) == 2 and parts[1] == "__init__.py":
            name, found = parts[0], packages
        elif len(parts) == 1 and path.endswith(".py"):
            name, found = path[: -len(".py")], modules
        else:
            continue
        if name.isidentifier() and name not in NOT_PRODUCT and not name.startswith(("test_", "tests")):
            found.add(name)
    names = packages or modules
    if not names:
        raise NothingToCheck("the product has no top-level Python package or module to import")
    command = "python3 -c " + shlex.quote("import " + ", ".join(sorted(names)))
    return RunSpec(kind="library", command=command, stack=stack, default=True)
