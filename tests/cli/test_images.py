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
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.py").write_text("print('hi')\n")
    images = DockerProductImages(SandboxSettings(), docker_client)
    build = images.build(tmp_path, default(sandbox_image, "python3 app.py").text, tag=f"{run_id}-app:0.3.0",
                         labels=image_labels(run_id, "c" * 40, "0.3.0", f"{run_id}-app", "d" * 64))
    assert build.image_id, build.log
    try:
        listed = runner.invoke(app, ["images"])
        assert listed.exit_code == 0
        row = next(line for line in listed.output.splitlines() if run_id in line)
        assert f"{run_id}-app:0.3.0" in row and "0.3.0" in row and "cccccccccc" in row
        removed = runner.invoke(app, ["images", "--remove", run_id])
        assert removed.exit_code == 0 and f"removed 1 image: {run_id}-app:0.3.0" in removed.output
        assert images.find({"macrohard.run": run_id}) == []
        again = runner.invoke(app, ["images", "--remove", run_id])
        assert again.exit_code == 0 and f"run {run_id} has none" in again.output
    finally:
        images.remove({"macrohard.run": run_id})
