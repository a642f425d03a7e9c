"""The bundled stack examples on the Docker engine: a Node.js product, and a Python product with a package
from PyPI, each run from its script to a release whose image works for the user."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

from macrohard.cli import app
from macrohard.transcript.log import read_events

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, config: str = "", *more: str
                ) -> tuple[Path, dict]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text(config)
    example = EXAMPLES / name
    result = CliRunner().invoke(app, ["run", str(example / "spec.md"), "--script", str(example / "script.yaml"),
                                      "--config", "macrohard.toml", "--workspaces", "ws", *more], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ws").iterdir()
    return run_dir, json.loads((run_dir / "run.json").read_text())["release"]


def run_image(client: docker.DockerClient, image: str, command: list[str]) -> str:
    out = client.containers.run(image, command, remove=True, network_mode="none", read_only=True, user="65534:65534")
    return out.decode()


def test_a_node_product_is_built_tested_and_released_on_the_node_stack(tmp_path, monkeypatch, docker_client, sandbox_image):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    # A hidden test the product would pass, were it run: what fails the acceptance stage is that none can run.
    (hidden / "test_cli.py").write_text(
        "import pathlib\n\n\ndef test_cli():\n    assert 'slugify' in pathlib.Path('slug.js').read_text()\n")
    run_dir, release = run_example(tmp_path, monkeypatch, "node", "", "--acceptance", str(hidden),
                                   "--tag-despite-acceptance")
    assert release["tag"] == "v0.1.0" and release["stack"] == "node" and release["packages"] == []
    events = list(read_events(run_dir / "transcript.jsonl"))
    # Hidden tests are pytest files: on another stack none run, and the run says so rather than passing them.
    accepted = next(e.data for e in events if e.kind == "acceptance")
    assert not accepted["passed"] and "python stack only" in accepted["reason"] and release["acceptance_total"] == 0
    assert next(e for e in events if e.kind == "stack").data["image"] == "macrohard-sandbox-node:latest"
    # The verdicts read node --test's JUnit report: the tests are counted, not just an exit code.
    verdicts = [e.data for e in events if e.kind == "verdict"]
    assert len(verdicts) == 2 and all(v["passed"] and v["tests"] >= 1 for v in verdicts)
    final = next(e.data for e in events if e.kind == "final.suite")
    assert final["passed"] and final["tests"] == 3
    assert release["smoke"]["command"] == "node cli.js Hello, World" and release["smoke"]["exit_code"] == 0
    assert run_image(docker_client, release["image"], ["node", "cli.js", "Tea", "for", "Two!"]) == "tea-for-two\n"


def test_a_python_product_gets_its_package_from_pypi_into_the_sandbox_the_verdict_and_the_image(
    tmp_path, monkeypatch, docker_client, sandbox_image
):
    try:
        urllib.request.urlopen("https://pypi.org/simple/humanize/", timeout=15).close()
    except OSError as e:
        pytest.skip(f"PyPI does not answer here ({e}); the example fetches humanize from it")
    run_dir, release = run_example(tmp_path, monkeypatch, "packages", f'[dependencies]\ncache = "{tmp_path / "cache"}"\n')
    (package,) = release["packages"]
    assert package["name"] == "humanize" and len(package["sha256"]) == 64 and package["filename"].endswith(".whl")
    events = list(read_events(run_dir / "transcript.jsonl"))
    fetched = [e for e in events if e.kind == "dependencies"]
    assert fetched and fetched[0].role == "engineer" and fetched[0].data["packages"][0]["sha256"] == package["sha256"]
    shell = next(e.data for e in events if e.kind == "tool.call" and e.data["tool"] == "run_shell")
    assert shell["ok"] and "docs/PRD.md" in shell["result"] and "Byte" in shell["result"]  # humanize ran in the sandbox
    assert next(e.data for e in events if e.kind == "final.suite")["passed"]
    # The user's image holds it too, and runs with no network.
    out = run_image(docker_client, release["image"], ["python3", "-m", "sizes", "docs/PRD.md"])
    assert out.endswith("  docs/PRD.md\n") and ("Bytes" in out or "kB" in out)


def test_a_node_product_that_exits_as_it_loads_fails_the_test_files_it_cut_short(tmp_path, docker_client, sandbox_image):
    from macrohard.company.verdict import parse_junit
    from macrohard.config import SandboxSettings
    from macrohard.sandbox.docker import DockerSandboxProvider
    from macrohard.stacks import NODE

    image = DockerSandboxProvider(SandboxSettings(), docker_client).ensure_image(NODE)  # built from today's reporter
    (tmp_path / "test").mkdir()
    (tmp_path / "add.js").write_text("process.exit(0);\nmodule.exports = (a, b) => a - b;\n")
    (tmp_path / "test" / "add.test.js").write_text(
        'const test = require("node:test"); const assert = require("node:assert");\n'
        'test("adds", () => assert.strictEqual(require("../add.js")(1, 2), 3));\n')
    (tmp_path / "out").mkdir()
    command = NODE.test_command.format(report="/out/junit.xml")
    docker_client.containers.run(image, ["sh", "-c", command], remove=True, network_mode="none", working_dir="/w",
                                 volumes={str(tmp_path): {"bind": "/w", "mode": "ro"},
                                          str(tmp_path / "out"): {"bind": "/out", "mode": "rw"}})
    report = parse_junit(tmp_path / "out" / "junit.xml")
    assert report is not None and report.tests == 1 and report.failures == 1 and not report.passed_ids
