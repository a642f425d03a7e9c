"""The product image's name and labels, and the stack's default smoke check."""

import pytest

from macrohard.deploy.product import (
    NothingToCheck, default_run, identity_labels, image_labels, image_version, product_name,
)


@pytest.mark.parametrize("title, name", [
    ("textstats", "textstats"),
    ("Text Stats: a CLI!", "text-stats-a-cli"),
    ("  ÜBER tool  ", "uber-tool"),
    ("!!!", "product"),
    ("x" * 100, "x" * 64),
])
def test_a_spec_title_becomes_an_image_name_docker_accepts(title, name):
    assert product_name(title) == name


def test_labels_name_the_run_commit_version_and_dockerfile():
    labels = image_labels("RUN1", "abc123", image_version("v0.2.0"), "textstats", "f" * 64)
    assert labels["macrohard.product-image"] == "1" and labels["macrohard.version"] == "0.2.0"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert identity_labels(labels) == {"macrohard.product-image": "1", "macrohard.run": "RUN1",
                                       "macrohard.commit": "abc123", "macrohard.dockerfile": "f" * 64}


def is_test(path: str) -> bool:
    return path.startswith("tests/") or path.split("/")[-1].startswith("test_")


def test_pythons_default_check_imports_every_top_level_package_that_is_not_a_test():
    files = ["textstats/__init__.py", "textstats/cli.py", "stats/__init__.py", "plant.py", "setup.py", "conftest.py",
             "tests/__init__.py", "docs/PRD.md", "src/lib/__init__.py", "RELEASE_NOTES.md"]
    run = default_run("python", files, is_test)
    assert run.command == "python3 -c 'import stats, textstats'"  # not plant.py: a script an import would run
    assert run.kind == "library" and run.default and run.stack == "python"


def test_without_a_package_it_imports_every_top_level_module_that_is_not_a_test():
    files = ["app.py", "util.py", "setup.py", "conftest.py", "test_app.py", "tests/test_util.py", "my-script.py"]
    assert default_run("python", files, is_test).command == "python3 -c 'import app, util'"


def test_no_default_check_without_anything_to_import_or_for_an_unknown_stack():
    with pytest.raises(NothingToCheck, match="no top-level Python package or module"):
        default_run("python", ["README.md", "tests/test_x.py", "setup.py"], is_test)
    with pytest.raises(NothingToCheck, match="'go' has no default"):
        default_run("go", ["main.go"], is_test)
