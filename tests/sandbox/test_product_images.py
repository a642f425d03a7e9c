"""Product images on a real engine: built offline on the sandbox image, smoke-checked hardened, found and
removed by label (sandbox/product.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from macrohard.config import SandboxSettings
from macrohard.deploy.dockerfile import check, default
from macrohard.models import RunSpec
from macrohard.sandbox.product import DockerProductImages

pytestmark = pytest.mark.docker

RUN = f"test-{uuid.uuid4().hex[:8]}"  # the run label of every image here: removed at the end
SERVER = """\
import http.server, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Health).serve_forever()
"""
PROBES = """\
import os, socket
print("uid", os.getuid())
try:
    open("/app/written", "w")
except OSError as e:
    print("read-only:", e.strerror)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network: reached")
except OSError as e:
    print("network:", e.strerror or e)
print("cwd", os.getcwd())
"""


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[DockerProductImages]:
    product = DockerProductImages(SandboxSettings(image=sandbox_image, timeout_s=20), docker_client)
    yield product
    product.remove({"macrohard.run": RUN})


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("product")
    (root / "tool").mkdir()
    (root / "tool" / "__init__.py").write_text("")
    (root / "tool" / "__main__.py").write_text("import sys\nprint('tool says', *sys.argv[1:])\n")
    (root / "tool" / "probes.py").write_text(PROBES)
    (root / "tool" / "server.py").write_text(SERVER)
    (root / "secret.txt").write_text("left out by .dockerignore\n")
    (root / ".dockerignore").write_text("# not in the image\nsecret.txt\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("tool")
    return root


def labels(commit: str = "c0ffee", **extra: str) -> dict[str, str]:
    return {"macrohard.run": RUN, "macrohard.commit": commit, "macrohard.product-image": "1", **extra}


@pytest.fixture(scope="module")
def built(images: DockerProductImages, product: Path, sandbox_image: str) -> str:
    build = images.build(product, default(sandbox_image, "python3 -m tool hello").text, tag=f"{RUN}-tool:0.1.0",
                         labels=labels())
    assert build.error is None and build.image_id, build.log
    return build.image_id


def test_the_image_is_built_with_its_labels_and_found_again_by_them(images, built, docker_client, sandbox_image):
    image = docker_client.images.get(built)
    assert f"{RUN}-tool:0.1.0" in image.tags
    assert image.labels["macrohard.run"] == RUN and image.labels["macrohard.commit"] == "c0ffee"
    assert image.labels["macrohard.owner"]  # which process built it
    assert image.attrs["Config"]["User"] == "65534:65534" and image.attrs["Config"]["WorkingDir"] == "/app"
    assert [i.id for i in images.find(labels())] == [built]
    assert images.find(labels(commit="other")) == []


def test_a_default_image_is_one_layer_holding_what_copy_would(images, built, docker_client, sandbox_image):
    image = docker_client.images.get(built)
    base = docker_client.images.get(sandbox_image)
    assert len(image.attrs["RootFS"]["Layers"]) == len(base.attrs["RootFS"]["Layers"]) + 1  # one layer, not a step each
    assert "PYTHONPATH=/app" in image.attrs["Config"]["Env"] and image.attrs["Config"]["Cmd"][-1] == "python3 -m tool hello"
    listing = docker_client.containers.run(built, ["sh", "-c", "stat -c '%U %a %F %n' /app /app/run.sh /app/latest /app/tool"
                                                   " && ./run.sh"], remove=True, network_mode="none").decode()
    assert listing.splitlines() == ["root 755 directory /app", "root 755 regular file /app/run.sh",
                                    "root 777 symbolic link /app/latest", "root 755 directory /app/tool", "run"]


def test_a_dockerfile_beyond_one_plain_copy_is_built_by_the_engine(images, product, sandbox_image):
    text = f"FROM {sandbox_image}\nCOPY --chown=65534:65534 . /app\nWORKDIR /app\n"
    build = images.build(product, check(text, sandbox_image).text, tag=f"{RUN}-chown:0.1.0", labels=labels("c2"))
    assert build.error is None and "Step 2/" in build.log, build.log


def test_its_smoke_command_passes_and_runs_hardened(images, built):
    assert images.smoke(built, RunSpec(kind="cli", command="python3 -m tool hello"), labels={"macrohard.run": RUN},
                        timeout_s=20).output.strip() == "tool says hello"
    result = images.smoke(built, RunSpec(kind="cli", command="python3 -m tool.probes; ls /app"),
                          labels={"macrohard.run": RUN}, timeout_s=20)
    assert result.passed and result.exit_code == 0
    assert "uid 65534" in result.output and "read-only: Read-only file system" in result.output
    assert "network: reached" not in result.output and "cwd /app" in result.output
    assert "secret.txt" not in result.output  # .dockerignore was applied


def test_a_failing_or_hanging_smoke_command_fails_with_its_output(images, built, docker_client):
    failed = images.smoke(built, RunSpec(kind="cli", command="echo starting; python3 -m tool.missing"),
                          labels={"macrohard.run": RUN}, timeout_s=20)
    assert not failed.passed and failed.exit_code == 1 and "it exited with code 1" in failed.reason
    assert "starting" in failed.output and "No module named tool.missing" in failed.output
    hung = images.smoke(built, RunSpec(kind="cli", command="sleep 60"), labels={"macrohard.run": RUN}, timeout_s=2)
    assert not hung.passed and hung.timed_out and hung.exit_code is None and "within 2s" in hung.reason
    # Nothing of the smoke checks is left.
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={RUN}"}) == []


def test_a_service_passes_when_its_health_endpoint_answers_on_an_internal_network(images, built, docker_client):
    run = RunSpec(kind="service", command="python3 -m tool.server 8000", port=8000, health_path="/health")
    result = images.smoke(built, run, labels={"macrohard.run": RUN}, timeout_s=20)
    assert result.passed and result.exit_code == 0, result.output
    assert result.health_url.endswith(":8000/health") and "answered 200" in result.output
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={RUN}"}) == []
    assert docker_client.networks.list(filters={"label": f"macrohard.run={RUN}"}) == []


def test_a_service_that_never_becomes_healthy_or_dies_fails_saying_so(images, built, docker_client):
    unhealthy = RunSpec(kind="service", command="python3 -m tool.server 8000", port=8000, health_path="/missing")
    result = images.smoke(built, unhealthy, labels={"macrohard.run": RUN}, timeout_s=3)
    assert not result.passed and "HTTP 404" in result.output
    dies = RunSpec(kind="service", command="echo no config >&2; exit 3", port=8000, health_path="/health")
    result = images.smoke(built, dies, labels={"macrohard.run": RUN}, timeout_s=20)
    assert not result.passed and "exited with code 3" in result.reason and "no config" in result.output
    assert docker_client.networks.list(filters={"label": f"macrohard.run={RUN}"}) == []


def test_a_build_that_fails_says_why_with_its_log(images, product, sandbox_image):
    build = images.build(product, check("COPY missing /app\n", sandbox_image).text, tag=f"{RUN}-broken:0.1.0",
                         labels=labels(commit="broken"))
    assert build.image_id is None and "missing" in build.error and "COPY missing /app" in build.log


def test_images_are_removed_by_label(images, product, sandbox_image):
    build = images.build(product, default(sandbox_image, "true").text, tag=f"{RUN}-gone:0.1.0",
                         labels=labels(commit="gone"))
    assert build.image_id
    removed = images.remove(labels(commit="gone"))
    assert [i.id for i in removed] == [build.image_id] and images.find(labels(commit="gone")) == []


def test_an_image_whose_container_cannot_start_fails_its_smoke_check(images, product, sandbox_image):
    build = images.build(product, check("COPY . /app\nUSER nosuchuser\n", sandbox_image).text,
                         tag=f"{RUN}-nouser:0.1.0", labels=labels(commit="nouser"))
    assert build.image_id, build.log
    result = images.smoke(build.image_id, RunSpec(kind="cli", command="true"), labels={"macrohard.run": RUN},
                          timeout_s=20)
    assert not result.passed and "its container did not start" in result.reason and "nosuchuser" in result.reason
