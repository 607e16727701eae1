"""The evaluation service the comparison screen calls: async, typed results, same numbers as the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.evaluation.compare import Comparison
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.evaluation import EvalFinished, EvalInstanceStarted, EvalRequest, EvalRolloutEvent, \
    EvaluationService
from tests.eval_builders import simple_episodes, write_run


def service(tmp_path) -> EvaluationService:
    config = AppConfig()
    config.storage.data_dir = tmp_path / "data"
    config.evaluation.resamples = 999
    return EvaluationService(config)


async def test_register_list_compare_export(tmp_path):
    svc = service(tmp_path)
    a = write_run(tmp_path / "traces", "a", simple_episodes([1, 2, 3, 2]))
    b = write_run(tmp_path / "traces", "b", simple_episodes([2, 4, 4, 3]), model="m-b")
    await svc.register_runs("base", [a])
    await svc.register_runs("new", [b], epochs=2)
    infos = await svc.list_experiments()
    assert [(i.name, i.version, i.episodes) for i in infos] == [("base", "v1.0", 4), ("new", "v1.0", 4)]
    comparison = await svc.compare(["base", "new"], baseline="base")
    assert isinstance(comparison, Comparison) and comparison.pairs[0].paired
    assert comparison.pairs[0].metrics[0].difference == 1.25
    md = await svc.export_report(comparison, tmp_path / "out" / "r.md", "md")
    assert "new vs base" in md.read_text(encoding="utf-8")
    js = await svc.export_report(comparison, tmp_path / "out" / "r.json", "json")
    assert json.loads(js.read_text())["baseline"] == "base"


async def test_run_eval_streams_typed_events_and_registers(tmp_path):
    svc = service(tmp_path)
    spec = RolloutSpec(agent="random", model="random", episodes=1, max_steps=10, seed=3, concurrency=1,
                       out_dir=tmp_path / "traces")
    events = [e async for e in svc.run_eval(EvalRequest(experiment="quick", spec=spec,
                                                         difficulties=["peaceful", "normal"]))]
    assert [e.difficulty for e in events if isinstance(e, EvalInstanceStarted)] == ["peaceful", "normal"]
    assert any(isinstance(e, EvalRolloutEvent) and e.event.kind == "episode_finished" for e in events)
    finished = events[-1]
    assert isinstance(finished, EvalFinished) and finished.experiment.version == "v1.0"
    assert {(e.instance, e.seed) for e in finished.experiment.episodes} == {("peaceful", 3), ("normal", 3)}
    again = [e async for e in svc.run_eval(EvalRequest(experiment="quick", spec=spec, difficulties=["easy"]))]
    assert again[-1].experiment.version == "v1.1"


async def test_an_interrupted_eval_resumes_its_run_folder(tmp_path):
    svc = service(tmp_path)
    spec = RolloutSpec(agent="random", model="random", episodes=2, max_steps=8, seed=1, concurrency=1,
                       out_dir=tmp_path / "traces")
    request = EvalRequest(experiment="again", spec=spec, difficulties=["normal"])
    first = [e async for e in svc.run_eval(request)][-1].experiment
    # as if the process died after the rollout but before registering: the run folder stays
    shutil.rmtree(tmp_path / "data" / "experiments")
    episodes_file = tmp_path / "traces" / "again-v1.0-normal" / "episodes.jsonl"
    lines = episodes_file.read_text().splitlines(keepends=True)
    episodes_file.write_text(lines[0])  # the second episode never finished
    events = [e async for e in svc.run_eval(request)]
    played = [e for e in events if isinstance(e, EvalRolloutEvent) and e.event.kind == "episode_finished"]
    assert len(played) == 1  # only the unfinished episode was played again
    resumed = events[-1].experiment
    assert resumed.version == "v1.0" and [e.seed for e in resumed.episodes] == [e.seed for e in first.episodes]
    other = EvalRequest(experiment="again", spec=spec.model_copy(update={"model": "other"}), difficulties=["normal"],
                        version="v1.0")
    shutil.rmtree(tmp_path / "data" / "experiments")
    with pytest.raises(UserError, match="already exists for random/random"):
        [e async for e in svc.run_eval(other)]
