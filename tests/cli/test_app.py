"""The CLI's answers to bad input: one line, what to do, a non-zero exit, no traceback."""

import pytest
from typer.testing import CliRunner

from macrohard.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False, prog_name="macrohard")
    assert "Traceback" not in result.output
    return result


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "MACROHARD_MODEL__MODEL", "MACROHARD_MODEL__BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "spec.md").write_text("# tool\nBuild a tool.\n")


def one_error_line(result) -> str:
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


COMMANDS = [[], ["run"], ["demo"], ["resume"], ["approve"], ["reject"], ["runs"], ["audit"], ["blame"], ["trace"],
            ["serve"], ["sandbox"], ["sandbox", "build"], ["sandbox", "prune"], ["sandbox", "doctor"]]


def test_every_command_has_help_in_words_not_python_types():
    for command in COMMANDS:
        for flag in ("--help", "-h"):
            result = invoke(*command, flag)
            assert result.exit_code == 0 and "Usage: macrohard" in result.output, (command, result.output)
            text = result.output
            for python in ("<bool>", "<str>", "<int", "<float", "<path>", "<list", "range", "x>=", "{"):
                assert python not in text, (command, python, text)
            # Every option says what it does.
            options = [line for line in text.splitlines() if line.startswith("  -")]
            assert options and all(len([part for part in line.split("  ") if part.strip()]) >= 2 for line in options), text
    assert "Usage: macrohard run [OPTIONS] SPEC" in invoke("run", "-h").output
    assert "Usage: macrohard blame [OPTIONS] RUN PATH[:LINE]" in invoke("blame", "-h").output
    assert "--port PORT" in invoke("serve", "-h").output and "Port to listen on" in invoke("serve", "-h").output


def test_the_version_is_printed():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"macrohard {version('macrohard')}\n"


def test_missing_spec(tmp_path):
    line = one_error_line(invoke("run", "nope.md"))
    assert "spec file nope.md does not exist" in line


def test_empty_spec(tmp_path):
    (tmp_path / "empty.md").write_text("  \n")
    assert "is empty" in one_error_line(invoke("run", "empty.md"))


def test_no_model_configured():
    line = one_error_line(invoke("run", "spec.md"))
    assert "no model configured" in line and "MACROHARD_MODEL__MODEL" in line


def test_no_api_key_for_the_default_endpoint(monkeypatch):
    monkeypatch.setenv("MACROHARD_MODEL__MODEL", "gpt-4.1")
    assert "OPENAI_API_KEY is not set" in one_error_line(invoke("run", "spec.md"))


def test_unknown_role_in_config(tmp_path):
    (tmp_path / "macrohard.toml").write_text('[model]\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n[roles.enginer]\nmodel = "x"\n')
    line = one_error_line(invoke("run", "spec.md"))
    assert "unknown role enginer" in line and "engineer" in line


def test_bad_config(tmp_path):
    (tmp_path / "macrohard.toml").write_text("max_parallel = [\n")
    assert "not valid TOML" in one_error_line(invoke("run", "spec.md"))
    (tmp_path / "macrohard.toml").write_text("max_parallel = -1\n")
    assert "max_parallel" in one_error_line(invoke("run", "spec.md"))


def test_missing_script_and_roles_folder(tmp_path):
    assert "script file s.yaml does not exist" in one_error_line(invoke("run", "spec.md", "--script", "s.yaml"))
    assert "roles folder" in one_error_line(invoke("run", "spec.md", "--roles", "noroles"))


def test_no_docker_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    monkeypatch.setenv("MACROHARD_MODEL__MODEL", "m")
    monkeypatch.setenv("MACROHARD_MODEL__BASE_URL", "http://127.0.0.1:9/v1")
    line = one_error_line(invoke("run", "spec.md"))
    assert "no Docker engine answers" in line
    assert "no Docker engine answers" in one_error_line(invoke("demo"))
    assert not (tmp_path / "workspaces").exists()


def test_audit_of_an_unknown_run():
    assert "no run 'r-1'" in one_error_line(invoke("audit", "r-1"))
    assert "there are no runs" in one_error_line(invoke("audit", "latest"))


def test_serve_refuses_a_public_address_without_allow_remote():
    result = invoke("serve", "--host", "0.0.0.0")
    assert result.exit_code == 2  # a usage mistake, like every other
    assert result.output.startswith("error: ") and "--allow-remote" in result.output


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_before_the_first_run_and_shows_runs_as_they_appear(tmp_path):
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "macrohard.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def page() -> str:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    assert answer.status == 200
                    return answer.read().decode()
            except OSError:
                assert time.monotonic() < deadline, proc.stdout.read1().decode() if proc.poll() is not None else "no answer"
                time.sleep(0.2)

    try:
        assert "No runs yet" in page()
        (tmp_path / "workspaces" / "r-1").mkdir(parents=True)
        (tmp_path / "workspaces" / "r-1" / "transcript.jsonl").write_text("")
        assert 'href="/runs/r-1"' in page()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    announced = proc.stdout.read().decode()
    assert f"at http://127.0.0.1:{port}/" in announced and "no runs yet" in announced


def test_serve_on_a_port_in_use_fails_before_announcing_a_url(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(invoke("serve", "--port", str(port)))
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port" in line


def test_an_acceptance_folder_that_is_missing_or_empty_is_refused(tmp_path):
    (tmp_path / "script.yaml").write_text("engineer: {}\n")
    line = one_error_line(invoke("run", "spec.md", "--script", "script.yaml", "--acceptance", "nope"))
    assert "acceptance tests folder nope" in line and "--acceptance" in line
    (tmp_path / "empty").mkdir()
    line = one_error_line(invoke("run", "spec.md", "--script", "script.yaml", "--acceptance", "empty"))
    assert "has no .py file" in line


def test_a_hint_keeps_its_brackets(tmp_path):
    # "[model] model" is a TOML table, not markup: the hint must show it as written.
    line = one_error_line(invoke("run", "spec.md"))
    assert "set [model] model in macrohard.toml" in line


def test_an_unknown_stack_on_the_command_line_is_a_usage_mistake():
    result = invoke("run", "spec.md", "--stack", "cobol")
    assert result.exit_code == 2 and result.output.strip() == "error: --stack 'cobol' is not a stack: use one of node, python"
