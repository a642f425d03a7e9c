import subprocess

import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.redact import Redactor

PLANTED = "sk-planted-0123456789abcdef"


def test_redacts_secret_named_variables_and_named_key_variables():
    r = Redactor.from_environment(
        {"OPENAI_API_KEY": PLANTED, "MY_LLM": "llm-secret-value", "HOME": "/root/somewhere", "GH_TOKEN": "short"},
        key_variables=["MY_LLM"],
    )
    assert r.text(f"key={PLANTED}") == "key=[REDACTED:OPENAI_API_KEY]"
    assert r.value({"a": ["x llm-secret-value y"], "n": 3}) == {"a": ["x [REDACTED:MY_LLM] y"], "n": 3}
    assert r.text("/root/somewhere short") == "/root/somewhere short"  # not secret-named / too short


def test_a_planted_key_the_model_echoes_appears_nowhere_in_the_run(tmp_path, monkeypatch):
    from fakes import LocalSandboxProvider

    monkeypatch.setenv("LEAKY_PROVIDER_KEY", PLANTED)
    demo = resource_dir("demo")
    script = yaml.safe_load((demo / "script.yaml").read_text())
    script["engineer"]["T-1"].insert(0, {
        "say": f"My key is {PLANTED}.",
        "calls": [
            {"write_file": {"path": "leak.txt", "content": f"KEY={PLANTED}\n"}},
            {"run_shell": {"command": f"echo {PLANTED}"}},
        ],
    })
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"))
    run = CompanyRun.create(demo / "spec.md", settings, script=tmp_path / "script.yaml")
    summary = run.execute(LocalSandboxProvider())
    assert summary.status == "done"

    leaked = [p for p in run.paths.run_dir.rglob("*") if p.is_file() and PLANTED.encode() in p.read_bytes()]
    assert leaked == []
    history = subprocess.run(
        ["git", "log", "-p", "--all", "--format=%B"], cwd=run.paths.repo, capture_output=True, text=True, check=True
    ).stdout
    assert "leak.txt" in history and PLANTED not in history
    assert "[REDACTED:LEAKY_PROVIDER_KEY]" in (run.paths.repo / "leak.txt").read_text()
    assert "[REDACTED:LEAKY_PROVIDER_KEY]" in run.paths.transcript.read_text()
