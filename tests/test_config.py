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


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[model]\nmodle = "gpt-4.1"\n', "model.modle"),
        ('[model]\nbase_ulr = "http://localhost:8000/v1"\n', "model.base_ulr"),
        ('[roles.engineer]\ntemprature = 0.2\n', "roles.engineer.temprature"),
        ('[prices."gpt-4.1"]\ninput = 2.0\noutput = 8.0\ncached = 0.5\n', "prices.gpt-4.1.cached"),
        ("[budget]\nmax_token = 1000\n", "budget.max_token"),
        ("[workspace]\nmax_file = 10\n", "workspace.max_file"),
        ('[secrets]\nenvs = ["X"]\n', "secrets.envs"),
        ("[sandbox]\nnetwrok = true\n", "sandbox.netwrok"),
        ("max_paralel = 2\n", "max_paralel"),
    ],
)
def test_unknown_keys_anywhere_are_errors_naming_the_key(tmp_path, monkeypatch, toml, key):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert f"'{key}'" in e.value.message and "\n" not in str(e.value)


def test_an_unknown_key_in_a_nested_environment_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MACROHARD_MODEL__MODLE", "gpt-4.1")
    with pytest.raises(ConfigError, match="model.modle"):
        load_settings()


def test_model_settings_per_role_with_drop_and_cached_prices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text(
        '[model]\nmodel = "gpt-4.1"\ntemperature = 0.2\nmax_tokens = 4096\ncontext_window = 128000\n'
        '[roles.product_manager]\nmodel = "o3"\ndrop = ["temperature"]\nstream = false\n'
        '[prices."gpt-4.1"]\ninput = 2.0\noutput = 8.0\ncached_input = 0.5\n'
    )
    s = load_settings()
    planner, engineer = s.model_for("product_manager"), s.model_for("engineer")
    assert (planner.model, planner.drop, planner.stream, planner.temperature) == ("o3", ["temperature"], False, 0.2)
    assert (planner.max_tokens, planner.context_window) == (4096, 128000)
    assert (engineer.model, engineer.drop, engineer.stream) == ("gpt-4.1", [], True)
    price = s.prices["gpt-4.1"]
    # 100k prompt tokens, 90k of them cached: 10k at $2, 90k at $0.50, 1k out at $8 (per million).
    assert price.cost(100_000, 1_000, 90_000) == pytest.approx(0.02 + 0.045 + 0.008)


def test_a_parameter_that_cannot_be_dropped_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "macrohard.toml").write_text('[model]\ndrop = ["temprature"]\n')
    with pytest.raises(ConfigError, match="model.drop"):
        load_settings()


def test_storage_is_sqlite_by_default_and_a_postgres_url_without_a_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings().storage.url is None
    (tmp_path / "macrohard.toml").write_text('[storage]\nurl = "postgresql://mh@db.internal:5432/macrohard"\n')
    assert load_settings().storage.url == "postgresql://mh@db.internal:5432/macrohard"
    for url, why in (("postgresql://mh:secret@db/macrohard", "must not hold a password"),
                     ("mysql://mh@db/macrohard", "must be a postgresql:// URL")):
        (tmp_path / "macrohard.toml").write_text(f'[storage]\nurl = "{url}"\n')
        with pytest.raises(ConfigError, match=why) as e:
            load_settings()
        assert "secret" not in str(e.value)
