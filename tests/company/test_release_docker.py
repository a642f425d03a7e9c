"""The release on the Docker engine: scripted products whose image cannot start, serve HTTP, or come
with a Dockerfile outside the safe subset."""

from pathlib import Path

import docker
import pytest
import yaml
from typer.testing import CliRunner

from macrohard._resources import resource_dir
from macrohard.cli import app
from macrohard.company.run import CompanyRun
from macrohard.config import SandboxSettings, Settings
from macrohard.sandbox.docker import DockerSandboxProvider
from macrohard.transcript.log import read_events

from test_release import CANNOT_START, notes, product_script, tag_of, write

pytestmark = pytest.mark.docker

SERVICE = """\
import http.server, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Health).serve_forever()
"""


def files(tmp_path: Path, script: dict) -> tuple[Path, Path]:
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    spec = tmp_path / "spec.md"
    spec.write_text("# tool\n\nA tool: `python3 -m tool`.\n")
    return spec, path


def run_on_docker(tmp_path: Path, script: dict, client: docker.DockerClient, **settings):
    spec, path = files(tmp_path, script)
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings)
    run = CompanyRun.create(spec, s, script=path)
    return run, run.execute(DockerSandboxProvider(SandboxSettings(timeout_s=30), client))


def images_of(client: docker.DockerClient, run_id: str) -> list:
    return client.images.list(filters={"label": f"macrohard.run={run_id}"})


def test_a_product_that_cannot_start_ends_untagged_with_the_smoke_output_in_the_summary(
    tmp_path, monkeypatch, docker_client, sandbox_image
):
    spec, path = files(tmp_path, product_script(CANNOT_START, {"kind": "cli", "command": "python3 -m tool --help"}))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(spec), "--script", str(path), "--workspaces", "ws",
                                      "--max-attempts", "1"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "no release: the smoke check of tool:0.1.0 failed: `python3 -m tool --help`: it exited with code 1" in text
    assert "tool cannot start: no configuration in /etc/tool.toml" in text
    (run_dir,) = (tmp_path / "ws").iterdir()
    smoke = next(e for e in read_events(run_dir / "transcript.jsonl") if e.kind == "smoke")
    assert smoke.data["exit_code"] == 1 and "tool cannot start" in smoke.data["output_tail"]
    assert "release:    " not in result.output and not (run_dir / "repo" / ".git" / "refs" / "tags" / "v0.1.0").exists()
    # The image was built and stays (labelled with its run), for a person to look into.
    assert [i.id for i in images_of(docker_client, run_dir.name)] == [smoke.data["image_id"]]


def test_a_service_product_is_released_once_its_health_endpoint_answers(tmp_path, docker_client, sandbox_image):
    script = product_script(describe={"kind": "service", "command": "python3 -m tool.server 8080", "port": 8080,
                                      "health_path": "/health"})
    script["engineer"]["T-1"][0]["calls"].append(write("tool/server.py", SERVICE))
    run, summary = run_on_docker(tmp_path, script, docker_client)
    assert summary.status == "done", summary.failure
    smoke = summary.release["smoke"]
    assert smoke["kind"] == "service" and smoke["passed"] and smoke["health_url"].endswith(":8080/health")
    image = docker_client.images.get(summary.release["image_id"])
    assert image.attrs["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert summary.release["image_id"] in tag_of(run, "v0.1.0")
    assert docker_client.networks.list(filters={"label": f"macrohard.run={run.run_id}"}) == []


def test_a_dockerfile_with_run_is_refused_and_nothing_is_built(tmp_path, docker_client, sandbox_image):
    deployer = [{"calls": [notes(), write("Dockerfile", "FROM debian\nCOPY . /app\nRUN touch /app/built\n")]},
                {"say": "Released."}]
    script = product_script(describe={"kind": "cli", "command": "python3 -m tool"}, deployer=deployer)
    run, summary = run_on_docker(tmp_path, script, docker_client, max_attempts=1)
    assert summary.status == "failed" and summary.release_tag is None
    assert summary.failure == "no release: the Dockerfile was refused: line 3: RUN: not allowed: it runs a command " \
                              "during the build, on the Docker engine, outside any sandbox"
    assert images_of(docker_client, run.run_id) == []
