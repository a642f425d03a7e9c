"""Fetching products' packages on the host, wheels only, from a real index on loopback."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from package_index import PackageIndex, make_wheel

from macrohard.config import DependencySettings
from macrohard.dependencies.manifest import ManifestError, Requirements, read_requirements
from macrohard.dependencies.store import DependencyError, DependencyStore


@pytest.fixture
def index(tmp_path: Path):
    built = tmp_path / "built"
    built.mkdir()
    served = PackageIndex(tmp_path / "index")
    served.add(make_wheel(built, "greetlib", "1.2.0", {"greetlib/__init__.py": "from textcase import up\n\ndef hi():\n    return up('hi')\n"},
                          requires=("textcase>=0.3",)))
    served.add(make_wheel(built, "textcase", "0.3.1", {"textcase/__init__.py": "def up(s):\n    return s.upper()\n"}))
    sdist = built / "onlysource-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        setup = built / "setup.py"
        setup.write_text("raise SystemExit('a build ran on the host')\n")
        t.add(setup, "onlysource-1.0/setup.py")
    served.add(sdist)
    yield served.start()
    served.stop()


def store(tmp_path: Path, index: PackageIndex, **settings) -> DependencyStore:
    return DependencyStore(DependencySettings(index_url=index.url, cache=tmp_path / "cache", **settings))


def requirements(*items: str) -> Requirements:
    return Requirements(items=list(items), source="requirements.txt")


def test_a_requirement_and_what_it_pulls_in_are_installed_from_checked_wheels(tmp_path, index):
    installed = store(tmp_path, index).install(requirements("greetlib>=1.0"))
    assert [(p.name, p.version) for p in installed.packages] == [("greetlib", "1.2.0"), ("textcase", "0.3.1")]
    assert all(len(p.sha256) == 64 and p.filename.endswith(".whl") for p in installed.packages)
    assert (installed.site / "greetlib" / "__init__.py").is_file() and (installed.site / "textcase").is_dir()
    # Cached across runs: with the index gone, the same set is had from the cache.
    index.stop()
    again = store(tmp_path, index).install(requirements("greetlib>=1.0"))
    assert again.site == installed.site and again.packages == installed.packages


def test_a_tampered_cached_wheel_is_fetched_again_and_checked(tmp_path, index):
    first = store(tmp_path, index).install(requirements("textcase"))
    wheel = tmp_path / "cache" / "wheels" / first.packages[0].filename
    wheel.write_bytes(b"not the wheel")
    (first.site / ".complete").unlink()  # the set must be installed again from the wheel
    again = store(tmp_path, index).install(requirements("textcase"))
    assert (again.site / "textcase" / "__init__.py").is_file()
    assert wheel.read_bytes()[:2] == b"PK"


def test_a_wheel_whose_hash_is_not_what_the_index_says_is_refused(tmp_path, index):
    lying = make_wheel(tmp_path, "liar", "1.0", {"liar/__init__.py": ""})
    index.add(lying, announced_sha256="0" * 64)
    with pytest.raises(DependencyError, match="(?i)hash"):
        store(tmp_path, index).install(requirements("liar"))


@pytest.mark.parametrize("wanted, message", [
    ("nosuchpackage", "No matching distribution"),
    ("onlysource", "No matching distribution"),  # a source distribution is never built on the host
])
def test_a_package_that_cannot_be_had_is_an_error_the_role_can_read(tmp_path, index, wanted, message):
    with pytest.raises(DependencyError, match=message) as refused:
        store(tmp_path, index).install(requirements(wanted))
    assert "only wheels" in str(refused.value)


def test_allow_and_deny_hold_for_what_a_package_pulls_in_too(tmp_path, index):
    with pytest.raises(DependencyError, match="textcase is denied"):
        store(tmp_path, index, deny=["textcase"]).install(requirements("greetlib"))
    with pytest.raises(DependencyError, match="greetlib is not in \\[dependencies\\] allow"):
        store(tmp_path, index, allow=["textcase"]).install(requirements("greetlib"))
    assert store(tmp_path, index, allow=["greet*", "textcase"]).install(requirements("greetlib")).packages


def test_manifests_give_plain_requirements_only():
    assert read_requirements({"requirements.txt": b"# deps\nrequests>=2.31  # http\nRich\n"}).items == ["requests>=2.31", "Rich"]
    assert read_requirements({"pyproject.toml": b'[project]\ndependencies = ["numpy<3"]\n'}).items == ["numpy<3"]
    assert read_requirements({}).items == []
    for bad in ("-e .", "--index-url http://evil/simple", "pkg @ https://evil/pkg.whl", "./local", "git+https://x/y",
                # What red-teaming got past a line filter to pip on the host, each a build of the role's code there:
                "file:/work/evil", "git+file:/work/evil", "fi\\\nle:/work/evil", "evil --no-binary=evil",
                "evil --only-binary=:none:", "evil --no-binary :all:",
                "textcase==${HOME}"):  # pip would put the host's environment in its error, for the role to read
        with pytest.raises(ManifestError):
            read_requirements({"requirements.txt": bad.encode()})
    with pytest.raises(ManifestError):
        read_requirements({"pyproject.toml": b'[project]\ndependencies = ["evil --no-binary=:all:"]\n'})
    # Extras, ranges and markers stay, written as packaging writes them.
    assert read_requirements({"requirements.txt": b"Rich[jupyter] >= 13 ; python_version >= '3.8'\n"}).items == [
        'Rich[jupyter]>=13; python_version >= "3.8"']


def test_a_source_distribution_is_never_built_whatever_the_manifest_says(tmp_path, index):
    # The index serves onlysource as an sdist whose setup.py would run; every way to ask for a build is refused
    # before pip runs, and a plain request finds no wheel.
    for line in (b"onlysource --no-binary=onlysource\n", b"onlysource --only-binary=:none:\n"):
        with pytest.raises(ManifestError):
            read_requirements({"requirements.txt": line})
    with pytest.raises(DependencyError, match="No matching distribution"):
        store(tmp_path, index).install(read_requirements({"requirements.txt": b"onlysource\n"}))


def test_the_policy_holds_for_a_resolution_cached_before_it(tmp_path, index):
    assert store(tmp_path, index).install(requirements("greetlib")).packages  # cached with no policy
    with pytest.raises(DependencyError, match="textcase is denied"):
        store(tmp_path, index, deny=["textcase"]).install(requirements("greetlib"))


def test_a_wheel_over_its_size_limit_or_a_set_that_unpacks_too_large_is_refused(tmp_path, index):
    # 2 MB of zeros: a small download that unpacks large, as a zip bomb does.
    index.add(make_wheel(tmp_path, "bulky", "1.0", {"bulky/__init__.py": "", "bulky/data.txt": "0" * (2 << 20)}))
    with pytest.raises(DependencyError, match=r"bulky-1.0-py3-none-any.whl is \d+ MB, more than \[dependencies\] "
                                              r"max_wheel_mb \(0.001\)"):
        store(tmp_path, index, max_wheel_mb=0.001).install(requirements("bulky"))
    with pytest.raises(DependencyError, match=r"the packages unpack to 2 MB, more than \[dependencies\] "
                                              r"max_installed_mb \(1\)"):
        store(tmp_path, index, max_installed_mb=1).install(requirements("bulky"))
    assert not list((tmp_path / "cache" / "sites").glob("*/bulky"))  # nothing was unpacked
    assert store(tmp_path, index).install(requirements("bulky")).packages[0].name == "bulky"
