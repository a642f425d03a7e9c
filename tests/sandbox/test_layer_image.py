"""Product images made by appending one layer (sandbox/layer_image.py): which Dockerfiles, the metadata as the
builder applies it, and on a real engine the same image the commit makes, or the commit when the engine refuses."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from macrohard.config import SandboxSettings
from macrohard.deploy.dockerfile import default, packages
from macrohard.sandbox import layer_image
from macrohard.sandbox.commit_image import commit_build, commit_plan
from macrohard.sandbox.layer_image import AppendPlan, append_build, append_plan, apply
from macrohard.sandbox.product import DockerProductImages, _context_files

RUN = f"test-{uuid.uuid4().hex[:8]}"
LABELS = 'LABEL macrohard.commit="c0ffee" macrohard.run="r-1" macrohard.owner="host:42"\n'  # as product.py writes them
BASE = {"Env": ["PATH=/usr/bin:/bin", "LANG=C"], "Cmd": ["sleep", "infinity"], "WorkingDir": "/workspace", "User": "",
        "Entrypoint": None, "Labels": {"org.opencontainers.image.title": "base"}, "ExposedPorts": {"22/tcp": {}}}


def settings_of(text: str) -> AppendPlan:
    plan = append_plan(text)
    assert plan is not None, text
    return plan


# -- which Dockerfiles, read how (no engine) ---------------------------------------


def test_the_stacks_default_is_appended_with_its_metadata_applied_as_the_builder_would():
    plan = settings_of(default("base:1", "python3 -m tool", 8080).text + LABELS)
    assert (plan.base, plan.dest) == ("base:1", "/app")
    config = apply(BASE, plan.settings)
    assert config["Env"] == ["PATH=/usr/bin:/bin", "LANG=C", "PYTHONPATH=/app", "PYTHONDONTWRITEBYTECODE=1",
                             "PYTHONUNBUFFERED=1"]
    assert config["WorkingDir"] == "/app" and config["User"] == "65534:65534"
    assert config["ExposedPorts"] == {"22/tcp": {}, "8080/tcp": {}}
    assert config["Cmd"] == ["sh", "-c", "python3 -m tool"] and config["Entrypoint"] is None
    assert config["Labels"] == {"org.opencontainers.image.title": "base", "macrohard.commit": "c0ffee",
                                "macrohard.run": "r-1", "macrohard.owner": "host:42"}
    assert BASE["Env"] == ["PATH=/usr/bin:/bin", "LANG=C"] and BASE["Labels"] == {"org.opencontainers.image.title": "base"}
    assert append_plan(packages("base:1", "/deps")).dest == "/deps"  # type: ignore[union-attr]


def test_env_replaces_a_variable_in_place_and_the_legacy_form_takes_the_rest_of_the_line():
    plan = settings_of('FROM b\nENV LANG=C.UTF-8 NEW="two words" EMPTY=\nENV MODE production  mode\nCOPY . /app\n')
    assert apply(BASE, plan.settings)["Env"] == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "NEW=two words", "EMPTY=",
                                                 "MODE=production  mode"]


def test_an_entrypoint_clears_the_inherited_cmd_but_not_one_this_dockerfile_set():
    alone = apply(BASE, settings_of('FROM b\nCOPY . /app\nENTRYPOINT ["python3", "-m", "tool"]\n').settings)
    assert alone["Entrypoint"] == ["python3", "-m", "tool"] and alone["Cmd"] is None
    before = apply(BASE, settings_of('FROM b\nCMD ["hi"]\nENTRYPOINT ["tool"]\nCOPY . /app\n').settings)
    assert before["Entrypoint"] == ["tool"] and before["Cmd"] == ["hi"]
    after = apply(BASE, settings_of('FROM b\nENTRYPOINT tool  --loud\nCMD ["hi"]\nCOPY . /app\n').settings)
    assert after["Entrypoint"] == ["/bin/sh", "-c", "tool  --loud"] and after["Cmd"] == ["hi"]
    shell = apply({**BASE, "Shell": ["/bin/bash", "-ec"]}, settings_of("FROM b\nCMD run it\nCOPY . /app\n").settings)
    assert shell["Cmd"] == ["/bin/bash", "-ec", "run it"]


def test_expose_and_label_forms():
    plan = settings_of("FROM b\nEXPOSE 8000/udp 9000 53/sctp\nLABEL plain=yes quoted=\"a 'b' c\"\nLABEL old a b\n"
                       "COPY . /srv/\n")
    config = apply(BASE, plan.settings)
    assert config["ExposedPorts"] == {"22/tcp": {}, "8000/udp": {}, "9000/tcp": {}, "53/sctp": {}}
    assert config["Labels"] == {"org.opencontainers.image.title": "base", "plain": "yes", "quoted": "a 'b' c",
                                "old": "a b"}
    assert plan.dest == "/srv"


@pytest.mark.parametrize("line", [
    "ENV P=$PATH:/x", "ENV A=${B}", "ENV A=one \\\n  B=two", 'ENV A="x\\"y"', "ENV A='x'", 'ENV A=x"y"', 'ENV A "x"',
    "ENV A", "ENV A=1 B", 'LABEL "a=b"=c', "LABEL", "WORKDIR app", "WORKDIR /my app", 'USER "x"', "USER",
    "EXPOSE 80-90", "EXPOSE 8000/TCP", "EXPOSE 0", "EXPOSE 65536", "EXPOSE 08000", "EXPOSE", "CMD [\"a\", 1]",
    "CMD [not json", "CMD []", "CMD --flag x", "ENTRYPOINT", "HEALTHCHECK CMD true", "STOPSIGNAL SIGINT",
    "COPY . /app",  # a second COPY
    "LABEL a=b\x1fc=d", "LABEL a=b\u00a0c=d", "ENV A=\u00e9",  # not printable ASCII: the engine may split elsewhere
])
def test_anything_beyond_the_literal_subset_is_not_appended(line):
    assert append_plan(f"FROM b\nWORKDIR /app\n{line}\nCOPY . /app\n") is None
    assert append_plan("FROM b\nWORKDIR /app\nCOPY . /app\n") is not None  # the rest of it would be


# -- on the engine: the same image as the commit, or the commit ----------------------


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("product")
    (root / "tool" / "data").mkdir(parents=True)
    (root / "tool" / "__init__.py").write_text("")
    (root / "tool" / "__main__.py").write_text("import os, sys\nprint('tool says', *sys.argv[1:], os.getcwd(),"
                                               " os.environ.get('MODE'), os.environ.get('B'))\n")
    (root / "tool" / "data" / "words.txt").write_text("one\n")
    (root / "tool" / "data" / "words.txt").chmod(0o600)
    (root / "index.js").write_text("console.log('node says', process.cwd(), process.getuid());\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("tool")
    return root


@pytest.fixture()
def engine(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The engine, this test's images removed after it."""
    yield docker_client
    for image in docker_client.api.images(filters={"reference": f"{RUN}*"}):
        docker_client.api.remove_image(image["Id"], force=True)


COMPARED = ("Env", "WorkingDir", "User", "ExposedPorts", "Cmd", "Entrypoint", "Labels")


def made_both_ways(client: docker.DockerClient, text: str, context: Path, run: list[str] | None) -> dict[str, Any]:
    """The image `text` describes, committed and appended: what they hold and do, asserted equal."""
    files = _context_files(context, ".no-dockerfile")
    plan, appended_plan = commit_plan(text), append_plan(text)
    assert plan is not None and appended_plan is not None, text
    committed = commit_build(client, plan, context, files, f"{RUN}-commit:1")
    appended = append_build(client, appended_plan, context, files, f"{RUN}-append:1")
    assert committed.image_id and appended.image_id, committed.log + appended.log
    assert appended.log.startswith(f"one layer on {plan.base}: {len(files)} files into {plan.dest}; ")
    seen = []
    for image_id in (committed.image_id, appended.image_id):
        config = client.api.inspect_image(image_id)["Config"]
        listing = client.containers.run(image_id, ["find", plan.dest, "-printf", "%p %u:%g %m %y %s %l\n"],
                                        entrypoint=[], remove=True, network_mode="none", user="0").decode()
        output = client.containers.run(image_id, run, remove=True, network_mode="none").decode()
        seen.append({"config": {k: config.get(k) for k in COMPARED}, "files": sorted(listing.splitlines()),
                     "output": output})
    assert seen[1] == seen[0]
    base = client.api.inspect_image(plan.base)["RootFS"]["Layers"]
    layers = client.api.inspect_image(appended.image_id)["RootFS"]["Layers"]
    assert layers[:-1] == base and len(layers) == len(base) + 1
    return seen[1]


@pytest.mark.docker
def test_the_python_defaults_come_out_as_the_commit_makes_them(engine, product, sandbox_image):
    made = made_both_ways(engine, default(sandbox_image, "python3 -m tool hello", 8000).text + LABELS, product, None)
    assert made["output"] == "tool says hello /app None None\n" and made["config"]["ExposedPorts"] == {"8000/tcp": {}}
    assert "/app/tool/data/words.txt root:root 600 f 4 " in made["files"] and "/app/latest root:root 777 l 4 tool" in made["files"]
    bare = made_both_ways(engine, default(sandbox_image, "").text + LABELS, product, ["python3", "-m", "tool"])
    assert bare["config"]["Cmd"] == ["sleep", "infinity"] and bare["output"] == "tool says /app None None\n"
    deps = made_both_ways(engine, default(sandbox_image, "python3 -m tool", deps="/deps").text + LABELS, product, None)
    assert "PYTHONPATH=/app:/deps" in deps["config"]["Env"]


@pytest.mark.docker
def test_the_packages_image_and_the_node_default_come_out_as_the_commit_makes_them(engine, product, sandbox_image):
    deps = made_both_ways(engine, packages(sandbox_image, "/deps") + LABELS, product, ["python3", "-m", "tool", "x"])
    assert deps["output"] == "tool says x /workspace None None\n" and "/deps/run.sh root:root 755 f 19 " in deps["files"]
    node = "macrohard-sandbox-node:latest"
    if not engine.images.list(name=node):
        pytest.skip(f"{node} is not built on this engine")
    made = made_both_ways(engine, default(node, "node index.js", stack="node").text + LABELS, product, None)
    assert made["output"] == "node says /app 65534\n"


@pytest.mark.docker
def test_a_deployers_metadata_comes_out_as_the_commit_makes_it(engine, product, sandbox_image):
    text = (f"FROM {sandbox_image}\nWORKDIR /srv/app\nENV MODE production  mode\n"
            'ENV B="two words" PATH=/srv/app:/usr/local/bin:/usr/bin:/bin\nCOPY . /srv/app/\n'
            "EXPOSE 8000/udp 9000\nLABEL org.example.title=\"tool 'x'\" plain=yes\nUSER 65534\n"
            'ENTRYPOINT ["python3", "-m"]\nCMD ["tool", "hi"]\n' + LABELS)
    made = made_both_ways(engine, text, product, None)
    assert made["output"] == "tool says hi /srv/app production  mode two words\n"
    assert made["config"]["ExposedPorts"] == {"8000/udp": {}, "9000/tcp": {}}
    assert made["config"]["Env"][0] == "PATH=/srv/app:/usr/local/bin:/usr/bin:/bin"
    shell = made_both_ways(engine, f"FROM {sandbox_image}\nCOPY . /app\nWORKDIR /app\n"
                           "ENTRYPOINT python3 -m tool from-entrypoint\n", product, None)
    assert shell["config"]["Cmd"] is None and shell["output"] == "tool says from-entrypoint /app None None\n"


@pytest.fixture()
def images(engine: docker.DockerClient, sandbox_image: str) -> DockerProductImages:
    return DockerProductImages(SandboxSettings(image=sandbox_image, timeout_s=20), engine)


def labels() -> dict[str, str]:
    return {"macrohard.run": RUN, "macrohard.product-image": "1"}


@pytest.mark.docker
def test_a_release_appends_and_what_is_beyond_the_subset_is_committed_or_built(images, engine, product, sandbox_image):
    plain = images.build(product, default(sandbox_image, "python3 -m tool").text, tag=f"{RUN}-plain:1", labels=labels())
    assert plain.image_id and plain.log.startswith(f"one layer on {sandbox_image}: ")
    assert engine.api.inspect_image(plain.image_id)["Config"]["Labels"]["macrohard.owner"]
    path = images.build(product, default(sandbox_image, "python3 -m tool").text + "ENV P=$PATH:/x\n",
                        tag=f"{RUN}-path:1", labels=labels())
    assert path.image_id and path.log.startswith(f"one commit on {sandbox_image}: ")
    env = engine.api.inspect_image(path.image_id)["Config"]["Env"]
    assert "P=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/x" in env
    checked = images.build(product, default(sandbox_image, "python3 -m tool").text
                           + "HEALTHCHECK CMD true\nSTOPSIGNAL SIGINT\n", tag=f"{RUN}-health:1", labels=labels())
    config = engine.api.inspect_image(checked.image_id)["Config"]
    assert "Step 1/" in checked.log and config["StopSignal"] == "SIGINT" and config["Healthcheck"]["Test"][-1] == "true"


class Engine:
    """The engine behind a client, its archive loads passed through `edit` first."""

    def __init__(self, client: docker.DockerClient, edit: Any) -> None:
        self.api, self._real, self._edit = self, client.api, edit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def load_image(self, data: bytes) -> Any:
        return self._real.load_image(self._edit(data))


def edited_config(data: bytes) -> bytes:
    """The archive with a label added to its config: an image that is not the one written."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar, tarfile.open(fileobj=out, mode="w") as edited:
        for member in tar.getmembers():
            body = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith(".json") and member.name != "manifest.json":
                config = json.loads(body)
                config["config"]["Labels"]["sneaked"] = "in"
                body = json.dumps(config).encode()
                member.size = len(body)
            edited.addfile(member, io.BytesIO(body))
    return out.getvalue()


@pytest.mark.docker
@pytest.mark.parametrize("edit", [lambda data: data[: len(data) // 2], edited_config], ids=["truncated", "other-image"])
def test_an_engine_that_does_not_load_the_layer_as_written_gets_the_commit_saying_so(
        edit, engine, product, sandbox_image, monkeypatch):
    monkeypatch.setattr(layer_image, "_refused", None)
    images = DockerProductImages(SandboxSettings(image=sandbox_image), Engine(engine, edit))  # type: ignore[arg-type]
    text = default(sandbox_image, "python3 -m tool hello").text
    build = images.build(product, text, tag=f"{RUN}-refused:1", labels=labels())
    assert build.image_id and build.error is None, build.log
    first, second = build.log.splitlines()[:2]
    assert first.startswith("the engine did not load an appended layer: ") and first.endswith(": one commit instead")
    assert second.startswith(f"one commit on {sandbox_image}: ")
    config = engine.api.inspect_image(f"{RUN}-refused:1")["Config"]
    assert config["Labels"]["macrohard.run"] == RUN and "sneaked" not in config["Labels"]
    assert not [i for i in engine.api.images(filters={"label": "sneaked=in"})]  # the wrong image is gone
    assert engine.containers.run(build.image_id, remove=True, network_mode="none") == b"tool says hello /app None None\n"
    # Once is enough: the next build in this process commits straight away, and says why.
    again = DockerProductImages(SandboxSettings(image=sandbox_image), engine).build(
        product, text, tag=f"{RUN}-refused:2", labels=labels())
    assert again.image_id and again.log.splitlines()[0].endswith("(earlier in this process): one commit instead")
