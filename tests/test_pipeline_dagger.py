"""The pipeline's DAgger rounds end to end on a tiny setting (the real local fine-tune service), an
interruption in the middle of the student's episodes, the resume, and the seed checks."""

from __future__ import annotations

import json
from contextlib import aclosing

import pytest
from pydantic import ValidationError

from crafter_tui.config import AppConfig
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.finetune.local_service import running_local_service
from crafter_tui.services.demo import demo_config, free_port
from crafter_tui.services.pipeline import (
    PipelineFinished, PipelineService, PipelineSpec, StageFinished, StageProgress, StageStarted, final_model,
)
from crafter_tui.traces.jsonl import iter_jsonl

DAGGER = "dagger:crafter-tiny:1"
STAGES = ["rollout", "export", "eval:random", "finetune:crafter-tiny", DAGGER, "export:crafter-tiny:dagger1",
          "finetune:crafter-tiny:dagger1", "eval:crafter-tiny", "compare"]


def _spec(workdir, **overrides) -> PipelineSpec:
    values = dict(workdir=workdir, data_episodes=2, max_steps=20, observation="brief",
                  filter=FilterSpec(mode="turn", drop_reasoning=True), models=["crafter-tiny"], epochs=1,
                  eval_episodes=2, eval_concurrency=2, eval_max_tokens=24, baselines=["random"],
                  dagger_rounds=1, dagger_episodes=2, dagger_seed=30_000, experiment_prefix="t")
    return PipelineSpec(**{**values, **overrides})


@pytest.mark.slow
async def test_a_dagger_round_plays_the_student_relabels_retrains_and_resumes_after_an_interruption(tmp_path):
    workdir = tmp_path / "work"
    config = demo_config(AppConfig(), workdir, free_port())
    spec = _spec(workdir)
    async with running_local_service(config):
        first: list = []
        async with aclosing(PipelineService(config).run(spec)) as events:
            async for event in events:  # interrupted once the student has finished its first episode
                first.append(event)
                if isinstance(event, StageProgress) and event.stage == DAGGER:
                    break
        assert [e.stage for e in first if isinstance(e, StageFinished)] == STAGES[:4]
        state = json.loads((workdir / "pipeline.json").read_text())["stages"]
        assert state[DAGGER]["finished"] is False and state[DAGGER]["run_id"]

        again = [event async for event in PipelineService(config).run(spec)]
    finished = [e for e in again if isinstance(e, StageFinished)]
    assert [e.stage for e in finished] == STAGES
    assert [e.stage for e in finished if e.skipped] == STAGES[:4]
    assert [e.stage for e in again if isinstance(e, StageStarted)] == STAGES[4:]
    state = json.loads((workdir / "pipeline.json").read_text())["stages"]
    assert state[DAGGER]["run_id"] == "t-dagger-crafter-tiny-1"  # resumed, not started over

    # the student that played is the first fine-tune; the evaluated model is the retrained one
    first_model = state["finetune:crafter-tiny"]["fine_tuned_model"]
    retrained = final_model(spec, state, "crafter-tiny")
    assert retrained == state["finetune:crafter-tiny:dagger1"]["fine_tuned_model"] != first_model
    run_dir = workdir / "traces" / "t-dagger-crafter-tiny-1"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["agent"] == "dagger" and record["model"] == first_model
    summaries = list(iter_jsonl(run_dir / "episodes.jsonl"))
    assert sorted({s["seed"] for s in summaries}) == [30_000, 30_001]
    turns = list(iter_jsonl(run_dir / "turns.jsonl"))
    assert turns and all(t["extra"]["executed_by"] == "student" and t["extra"]["label_goal"] for t in turns)
    # the retraining data is the expert's examples plus the relabelled student turns
    expert_data = (workdir / "data" / "t-sft.jsonl").read_text().splitlines()
    aggregate = (workdir / "data" / "t-crafter-tiny-dagger1-sft.jsonl").read_text().splitlines()
    assert state["export:crafter-tiny:dagger1"]["examples"] == len(aggregate) > len(expert_data)
    assert set(expert_data) <= set(aggregate)
    final = again[-1]
    assert isinstance(final, PipelineFinished) and final.experiments == ["t-random", "t-crafter-tiny"]
    eval_run = json.loads((workdir / "traces" / "t-crafter-tiny-v1.0-normal" / "run.json").read_text())
    assert eval_run["model"] == retrained


def test_student_seeds_must_stay_away_from_the_data_and_held_out_seeds(tmp_path):
    with pytest.raises(ValidationError, match=r"DAgger seeds 0\.\.5 overlap the eval seeds 0\.\.1"):
        _spec(tmp_path, dagger_seed=0, dagger_rounds=3)
    with pytest.raises(ValidationError, match="overlap the data seeds 10000..10001"):
        _spec(tmp_path, dagger_seed=9_999)
    assert _spec(tmp_path, dagger_seed=9_999, dagger_rounds=0).dagger_rounds == 0  # no rounds, no student seeds
    assert _spec(tmp_path, dagger_rounds=2).dagger_round_seed(2) == 30_002


def test_the_pipeline_command_names_the_flag_when_student_seeds_overlap_the_held_out_seeds(tmp_path, capsys):
    from crafter_tui.cli import main

    code = main(["pipeline", "--workdir", str(tmp_path / "w"), "--dagger-rounds", "1", "--dagger-seed", "5",
                 "--eval-seed", "0", "--eval-episodes", "20"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--dagger-seed" in err and "overlap the eval seeds 0..19" in err
    assert not (tmp_path / "w").exists()


async def test_runs_from_two_trace_folders_are_refused_instead_of_silently_dropped(tmp_path):
    from crafter_tui.errors import UserError
    from crafter_tui.services.pipeline import PipelineState

    spec = _spec(tmp_path / "w")
    service = PipelineService(demo_config(AppConfig(), tmp_path / "w", free_port()))
    runs = [tmp_path / "one" / "t-data", tmp_path / "two" / "t-dagger-crafter-tiny-1"]
    with pytest.raises(UserError, match="2 trace folders"):
        [e async for e in service._export(spec, PipelineState(tmp_path), "export:x", runs, tmp_path / "x.jsonl")]
