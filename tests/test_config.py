"""Configuration: precedence, strictness, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from crafter_tui.config import AppConfig, load_config
from crafter_tui.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crafter_config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    config = load_config(None, environ={})
    assert config == AppConfig()
    assert config.eval.agent == "scripted"


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    path = _write(tmp_path, '[eval]\nepisodes = 7\nseed = 3\n[openai]\nbase_url = "http://file/v1"\n')
    env = {"OPENAI_BASE_URL": "http://env/v1"}
    config = load_config(path, environ=env)
    assert config.eval.episodes == 7 and config.eval.seed == 3
    assert config.openai.base_url == "http://env/v1"
    config = load_config(path, environ=env, flags={"openai": {"base_url": "http://flag/v1"},
                                                   "eval": {"episodes": 2, "seed": None}})
    assert config.openai.base_url == "http://flag/v1"
    assert config.eval.episodes == 2 and config.eval.seed == 3  # a flag left unset does not hide the file


def test_the_repository_config_file_is_valid():
    repo_config = Path(__file__).resolve().parents[1] / "crafter_config.toml"
    config = load_config(repo_config, environ={})
    assert config.eval.seed == 42 and config.service.base_url == "http://localhost:8901"


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "[eval]\nepisodez = 3\n")
    with pytest.raises(ConfigError, match=r"crafter_config.toml: unknown key 'eval.episodez'"):
        load_config(path, environ={})


def test_wrong_type_names_key_and_file(tmp_path):
    path = _write(tmp_path, '[eval]\nepisodes = "many"\n')
    with pytest.raises(ConfigError, match=r"crafter_config.toml: bad value for 'eval.episodes'"):
        load_config(path, environ={})


def test_unknown_section_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'evaluate'"):
        load_config(_write(tmp_path, "[evaluate]\nx = 1\n"), environ={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(_write(tmp_path, "[eval\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", environ={})


def test_secrets_are_secret(tmp_path):
    config = load_config(_write(tmp_path, '[openai]\napi_key = "sk-file-secret"\n'),
                         environ={"SYNTH_API_KEY": "sk-synth-secret"})
    assert config.openai.api_key.get_secret_value() == "sk-file-secret"
    dumped = config.model_dump_json() + repr(config) + str(config)
    assert "sk-file-secret" not in dumped and "sk-synth-secret" not in dumped
