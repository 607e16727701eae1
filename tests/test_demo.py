"""`crafter-tui demo` on a micro recipe: every stage, the headline, the report, and the service stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_quick_demo_command_trains_a_model_that_beats_random_on_the_same_seeds(tmp_path):
    """The issue's CI proof: `crafter-tui demo --quick` end to end, the real recipe, the real command."""
    workdir = tmp_path / "demo-quick"
    done = subprocess.run([sys.executable, "-c", "import sys; from crafter_tui.cli import main; sys.exit(main())",
                           "demo", "--quick", "--json", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    headline = json.loads(done.stdout)
    stages = json.loads((workdir / "pipeline.json").read_text())["stages"]
    assert list(stages) == ["rollout", "export", "eval:random", "eval:scripted", "finetune:crafter-tiny",
                            "eval:crafter-tiny", "compare"]
    assert all(stage.get("finished") for stage in stages.values())
    assert Path(headline["report"]).is_file()
    assert headline["trained_progression"] > headline["random_progression"], headline
