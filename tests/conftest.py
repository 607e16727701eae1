"""Shared fixtures: every test works in its own temporary directory with no user config."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test reads the repository's crafter_config.toml or a user's keys, or writes into the repo."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SYNTH_API_KEY", "SYNTH_BASE_URL", "MODAL_API_KEY",
                "MODAL_BASE_URL", "CRAFTER_TUI_CONFIG", "CRAFTER_ENV_URL", "CRAFTER_TUI_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
