"""The pipeline end to end on a tiny recipe, with the real local fine-tune service, then a resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crafter_tui.config import AppConfig
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.errors import UserError
from crafter_tui.finetune.local_service import running_local_service
from crafter_tui.services.demo import demo_config, free_port
from crafter_tui.services.pipeline import (
    PipelineFinished, PipelineService, PipelineSpec, PipelineState, StageFinished, StageStarted,
)
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS

STAGES = ["rollout", "export", "eval:random", "finetune:crafter-tiny", "eval:crafter-tiny", "compare"]


async def test_pipeline_runs_every_stage_and_a_rerun_redoes_none(tmp_path):
    workdir = tmp_path / "work"
    config = demo_config(AppConfig(), workdir, free_port())
    spec = PipelineSpec(workdir=workdir, data_episodes=2, max_steps=20, observation="compact",
                        filter=FilterSpec(mode="turn", drop_reasoning=True), models=["crafter-tiny"], epochs=1,
                        eval_episodes=2, eval_concurrency=2, eval_max_tokens=24, baselines=["random"],
                        experiment_prefix="t")
    async with running_local_service(config):
        events = [event async for event in PipelineService(config).run(spec)]
        finished = [e.stage for e in events if isinstance(e, StageFinished)]
        assert finished == STAGES
        final = events[-1]
        assert isinstance(final, PipelineFinished)
        assert final.experiments == ["t-random", "t-crafter-tiny"]
        html = final.report.read_text()
        assert final.report.suffix == ".html" and "t-crafter-tiny" in html and "t-random" in html
        state = json.loads((workdir / "pipeline.json").read_text())["stages"]
        assert state["finetune:crafter-tiny"]["fine_tuned_model"].startswith("ft:crafter-tiny")
        tuned = final.comparison.experiment("t-crafter-tiny")
        assert tuned.episodes == 2

        again = [event async for event in PipelineService(config).run(spec)]
        skipped = [e.stage for e in again if isinstance(e, StageFinished) and e.skipped]
        assert skipped == STAGES[:-1]  # only the comparison is recomputed
        assert not [e for e in again if isinstance(e, StageStarted) and e.stage != "compare"]

        before = (workdir / "pipeline.json").read_text()
        changed = spec.model_copy(update={"data_episodes": 3, "filter": FilterSpec(mode="turn")})
        with pytest.raises(UserError, match=r"other settings \(data_episodes: 2 -> 3; "
                                            r"filter\.drop_reasoning: True -> False\)"):
            [event async for event in PipelineService(config).run(changed)]
        assert (workdir / "pipeline.json").read_text() == before  # the finished run is kept as it was


def test_a_folder_from_before_settings_were_recorded_is_refused_not_resumed(tmp_path):
    legacy = {"stages": {"rollout": {"finished": True, "run_dir": str(tmp_path / "traces" / "x")}}}
    (tmp_path / "pipeline.json").write_text(json.dumps(legacy))
    with pytest.raises(UserError, match="did not record its settings"):
        PipelineState(tmp_path).adopt(PipelineSpec(workdir=tmp_path))
    assert json.loads((tmp_path / "pipeline.json").read_text()) == legacy
    fresh = PipelineState(tmp_path / "new")
    (tmp_path / "new").mkdir()
    fresh.adopt(PipelineSpec(workdir=tmp_path / "new", data_episodes=5))
    assert PipelineState(tmp_path / "new").settings["data_episodes"] == 5


def test_a_folder_made_with_an_earlier_wording_of_the_observation_is_refused_not_resumed(tmp_path):
    spec = PipelineSpec(workdir=tmp_path, observation="brief")
    state = PipelineState(tmp_path)
    state.adopt(spec)
    state.save("rollout", finished=True, run_dir=str(tmp_path / "traces" / "x"))
    assert PipelineState(tmp_path).settings["observation_revision"] == OBSERVATION_REVISIONS["brief"]
    PipelineState(tmp_path).adopt(spec)  # the same wording resumes
    recorded = json.loads((tmp_path / "pipeline.json").read_text())
    recorded["spec"]["observation_revision"] -= 1
    (tmp_path / "pipeline.json").write_text(json.dumps(recorded))
    now = OBSERVATION_REVISIONS["brief"]
    with pytest.raises(UserError, match=rf"observation_revision: {now - 1} -> {now}"):
        PipelineState(tmp_path).adopt(spec)
    del recorded["spec"]["observation_revision"]  # a folder from before the wording was recorded
    (tmp_path / "pipeline.json").write_text(json.dumps(recorded))
    with pytest.raises(UserError, match=rf"observation_revision: None -> {now}"):
        PipelineState(tmp_path).adopt(spec)


async def test_a_data_rollout_where_every_episode_fails_stops_at_the_rollout_stage(tmp_path):
    workdir = tmp_path / "work"
    config = demo_config(AppConfig(), workdir, free_port())
    config.openai.base_url, config.openai.api_key = "http://127.0.0.1:9/v1", "k"
    config.openai.max_retries, config.openai.timeout = 0, 2.0
    spec = PipelineSpec(workdir=workdir, data_agent="openai", data_model="nowhere", data_episodes=2, max_steps=10,
                        models=["crafter-tiny"], baselines=["random"], experiment_prefix="t")
    with pytest.raises(UserError, match=r"every data episode failed \(agent_error; first, seed \d+: .*127\.0\.0\.1:9"):
        [event async for event in PipelineService(config).run(spec)]
    state = json.loads((workdir / "pipeline.json").read_text())["stages"]
    assert not state["rollout"]["finished"] and "export" not in state


def readme_recipe_command() -> list[str]:
    """The README's spelling of the demo's recipe as a pipeline command (its arguments after ``--workdir DIR``),
    read from the README itself so the two cannot drift apart."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    found = re.search(r"`crafter-tui pipeline --workdir DIR ([^`]+)`", readme)
    assert found, "the README no longer spells the recipe as a pipeline command"
    return found.group(1).split()


def _pipeline_spec(monkeypatch, argv: list[str]) -> PipelineSpec:
    from crafter_tui.cli import main
    from crafter_tui.cli import pipeline as pipeline_cli

    seen = []

    async def capture(service, spec, view, keep_service):
        seen.append(spec)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline_cli, "_with_service", capture)  # before any service is started
    with pytest.raises(SystemExit):
        main(["pipeline", *argv])
    return seen[0]


def test_the_readmes_pipeline_command_is_the_demos_recipe(tmp_path, monkeypatch):
    from crafter_tui.services.demo import FULL, demo_spec

    spec = _pipeline_spec(monkeypatch, ["--workdir", str(tmp_path / "w"), *readme_recipe_command()])
    assert spec == demo_spec(tmp_path / "w", FULL)


def test_the_filter_section_fills_what_the_pipelines_flags_leave_out(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('[filter]\nmode = "turn"\ndedupe = true\ngoal_reasoning = true\n')
    spec = _pipeline_spec(monkeypatch, ["--workdir", str(tmp_path / "w"), "--config", str(config),
                                        "--balance-actions"])
    assert spec.filter == FilterSpec(mode="turn", dedupe=True, balance_actions=True, goal_reasoning=True)
