"""`crafter-tui demo` on a micro recipe: every stage, the headline, the report, and the service stopped."""

from __future__ import annotations

import json

from crafter_tui.config import AppConfig
from crafter_tui.finetune.local_service import is_up
from crafter_tui.services.demo import Recipe, run_demo
from crafter_tui.services.pipeline import StageFinished

MICRO = Recipe(data_episodes=2, model="crafter-tiny", epochs=1, eval_episodes=2, max_steps=20, eval_max_tokens=24)


async def test_demo_runs_the_whole_loop_and_reports_the_headline(tmp_path):
    workdir = tmp_path / "demo"
    stages: list[str] = []
    headline = await run_demo(AppConfig(), workdir, MICRO,
                              lambda e: stages.append(e.stage) if isinstance(e, StageFinished) else None)
    assert stages == ["rollout", "export", "eval:random", "eval:scripted", "finetune:crafter-tiny",
                      "eval:crafter-tiny", "compare"]
    assert headline.trained_model.startswith("ft:crafter-tiny")
    for value in (headline.trained_progression, headline.random_progression, headline.expert_progression):
        assert value is not None and 0.0 <= value <= 1.0
    assert headline.expert_progression > headline.random_progression
    assert headline.p_value_vs_random is not None and 0.0 <= headline.p_value_vs_random <= 1.0
    assert headline.report.is_file() and "demo-expert" in headline.report.read_text()
    assert set(json.loads(headline.model_dump_json())) >= {
        "trained_progression", "random_progression", "expert_progression", "p_value_vs_random", "report"}
    port = int((workdir / "service.port").read_text())
    assert not is_up(f"http://127.0.0.1:{port}/v1"), "the demo stops the service it started"
