import pytest

from macrohard.config import load_settings
from macrohard.errors import ConfigError


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text(
        'max_parallel = 3\nmax_attempts = 5\n[model]\nmodel = "file-model"\nbase_url = "http://localhost:11434/v1"\n'
        '[roles.engineer]\nmodel = "coder"\n[sandbox]\nmemory = "2g"\n'
    )
    monkeypatch.setenv("MACROHARD_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("MACROHARD_MODEL__MODEL", "env-model")
    s = load_settings(overrides={"max_parallel": 1, "workspaces": None})
    assert (s.max_parallel, s.max_attempts) == (1, 4)
    assert s.model.model == "env-model" and s.model.base_url == "http://localhost:11434/v1"
    assert s.model_for("engineer").model == "coder"
    assert s.model_for("engineer").base_url == "http://localhost:11434/v1"
    assert s.model_for("tester").model == "env-model"
    assert s.sandbox.memory == "2g" and s.sandbox.network is False


def test_bad_config_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("max_parallel = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    bad.write_text("max_parallel = 0")
    with pytest.raises(ConfigError, match="max_parallel"):
        load_settings(bad)
    bad.write_text("max_paralel = 2")
    with pytest.raises(ConfigError, match="max_paralel"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_a_base_url_with_a_password_is_refused():
    import pytest

    from macrohard.config import load_settings
    from macrohard.errors import ConfigError

    with pytest.raises(ConfigError, match="must not hold a user and password") as refused:
        load_settings(overrides={"model": {"base_url": "https://me:hunter2hunter2@api.example/v1"}})
    assert "hunter2" not in refused.value.message


def test_secrets_env_lists_variables_and_unknown_keys_are_refused():
    import pytest

    from macrohard.config import load_settings
    from macrohard.errors import ConfigError

    assert load_settings(overrides={"secrets": {"env": ["DEPLOY_HOOK"]}}).secrets.env == ["DEPLOY_HOOK"]
    with pytest.raises(ConfigError, match="secrets.envs"):
        load_settings(overrides={"secrets": {"envs": ["X"]}})
