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


def test_the_name_rule_is_tight_and_the_config_list_adds_any_variable():
    from macrohard.redact import secret_named

    assert all(secret_named(n) for n in ("OPENAI_API_KEY", "GH_TOKEN", "APIKEY", "DB_PASSWORD", "AUTH", "AWS_CREDENTIALS"))
    assert not any(secret_named(n) for n in ("GIT_AUTHOR_NAME", "AUTHOR", "PWD", "HOME", "KEYBOARD_LAYOUT"))
    r = Redactor.from_environment({"GIT_AUTHOR_NAME": "Jane Maintainer Doe", "DEPLOY_HOOK": "hook-value-1234"},
                                  key_variables=["DEPLOY_HOOK"])
    assert r.text("Jane Maintainer Doe hook-value-1234") == "Jane Maintainer Doe [REDACTED:DEPLOY_HOOK]"


def test_a_password_in_any_variables_url_is_a_secret_and_urls_lose_their_userinfo():
    from macrohard.redact import strip_url, without_userinfo

    r = Redactor.from_environment({"DB_URL": "postgres://app:correct-horse-battery@db/app"})
    assert r.text("connect with correct-horse-battery") == "connect with [REDACTED:DB_URL password]"
    assert without_userinfo("at https://me:pw1234567@proxy.example/v1 now") == "at https://proxy.example/v1 now"
    assert strip_url("https://me:pw@api.example:8443/v1") == "https://api.example:8443/v1"


def test_encoded_secrets_are_found_and_decoded_arguments_redacted():
    import base64
    import json

    r = Redactor({"K": PLANTED})
    escaped = "".join(f"\\u{ord(c):04x}" for c in PLANTED)
    for before in (b"", b"a", b"ab"):
        for after in (b"", b"z", b"yz"):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                assert r.find(b"x=" + encode(before + PLANTED.encode() + after)) == ["K"]
    assert r.find(PLANTED.encode().hex().upper().encode()) == ["K"]
    assert r.find(escaped.encode()) == ["K"] and r.find(b"harmless text") == []
    args = r.arguments(json.dumps({"path": "k.txt", "content": PLANTED}).replace(PLANTED, escaped))
    assert PLANTED not in json.loads(args)["content"] and "[REDACTED:K]" in json.loads(args)["content"]


def test_a_key_written_escaped_split_or_encoded_never_reaches_git(tmp_path, monkeypatch):
    import base64

    from fakes import LocalSandboxProvider

    monkeypatch.setenv("LEAKY_PROVIDER_KEY", PLANTED)
    demo = resource_dir("demo")
    script = yaml.safe_load((demo / "script.yaml").read_text())
    half = len(PLANTED) // 2
    escaped = "".join(f"\\u{ord(c):04x}" for c in PLANTED)
    script["engineer"]["T-1"].insert(0, {"calls": [
        {"write_file": {"path": "escaped.txt", "content": "PLACEHOLDER"}},
        {"run_shell": {"command": f"printf '%s%s\\n' '{PLANTED[:half]}' '{PLANTED[half:]}' > split.txt"}},
        {"run_shell": {"command": f"echo {base64.b64encode(PLANTED.encode()).decode()} > b64.txt"}},
        {"run_shell": {"command": f"echo {PLANTED.encode().hex()} > hex.txt"}},
    ]})
    text = yaml.safe_dump(script).replace("PLACEHOLDER", escaped.replace("\\", "\\\\"))
    (tmp_path / "script.yaml").write_text(text)
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"))
    run = CompanyRun.create(demo / "spec.md", settings, script=tmp_path / "script.yaml")
    assert run.execute(LocalSandboxProvider()).status == "done"
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=run.paths.repo, capture_output=True, text=True, check=True).stdout
    for form in (PLANTED, base64.b64encode(PLANTED.encode()).decode(), PLANTED.encode().hex(), escaped):
        assert form not in history
    assert "escaped.txt" in history  # written with the key redacted
    from macrohard.transcript.log import read_events

    refused = [e for e in read_events(run.paths.transcript) if e.kind == "secret.refused"]
    assert refused and set(refused[0].data["files"]) == {"split.txt", "b64.txt", "hex.txt"}
    assert refused[0].data["files"]["b64.txt"] == ["LEAKY_PROVIDER_KEY"]
    assert PLANTED not in run.paths.run_json.read_text()
