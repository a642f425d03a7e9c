"""`macrohard images`: the product images releases built, listed and removed by run."""

import uuid

import pytest
from typer.testing import CliRunner

from macrohard.cli import app
from macrohard.config import SandboxSettings
from macrohard.deploy.dockerfile import default
from macrohard.deploy.product import image_labels
from macrohard.sandbox.product import DockerProductImages

runner = CliRunner()


def test_remove_and_all_do_not_go_together():
    result = runner.invoke(app, ["images", "--remove", "r1", "--all"])
    assert result.exit_code == 2 and "do not go together" in result.output


@pytest.mark.docker
def test_images_lists_a_runs_image_and_removes_it_by_run(tmp_path, docker_client, sandbox_image):
    run_id, other = (f"test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    (tmp_path / "ws" / run_id).mkdir(parents=True)
    (tmp_path / "ws" / run_id / "transcript.jsonl").write_text("")  # a run of this folder; `other` is elsewhere
    (tmp_path / "app.py").write_text("print('hi')\n")
    images = DockerProductImages(SandboxSettings(), docker_client)
    for run in (run_id, other):
        build = images.build(tmp_path, default(sandbox_image, "python3 app.py").text, tag=f"{run}-app:0.3.0",
                             labels=image_labels(run, "c" * 40, "0.3.0", f"{run}-app", "d" * 64))
        assert build.image_id, build.log
    ws = ["--workspaces", str(tmp_path / "ws")]
    try:
        listed = runner.invoke(app, ["images", *ws])
        assert listed.exit_code == 0
        row = next(line for line in listed.output.splitlines() if run_id in line)
        assert f"{run_id}-app:0.3.0" in row and "0.3.0" in row and "cccccccccc" in row
        assert other not in listed.output and "of runs in other folders" in listed.output
        removed = runner.invoke(app, ["images", "--all", *ws])  # this folder's runs only
        assert removed.exit_code == 0 and f"removed 1 image: {run_id}-app:0.3.0" in removed.output
        assert images.find({"macrohard.run": run_id}) == [] and images.find({"macrohard.run": other})
        again = runner.invoke(app, ["images", "--remove", run_id, *ws])
        assert again.exit_code == 0 and f"run {run_id} has none" in again.output
        elsewhere = runner.invoke(app, ["images", "--remove", other, *ws])  # named, any run's
        assert elsewhere.exit_code == 0 and f"removed 1 image: {other}-app:0.3.0" in elsewhere.output
    finally:
        for run in (run_id, other):
            images.remove({"macrohard.run": run})
