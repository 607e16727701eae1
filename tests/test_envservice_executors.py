"""Scale-out executors: worker processes and the Modal fan-out give the in-process results."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from crafter_tui.config import AppConfig
from crafter_tui.rollout.episode import EpisodeJob
from crafter_tui.rollout.executors import Delivery, ModalExecutor, ProcessPoolExecutor, executor_for, partition
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import run_rollout
from crafter_tui.traces.jsonl import iter_jsonl


def _spec(tmp: Path, **changes) -> RolloutSpec:
    values = dict(agent="scripted", model="scripted-expert", episodes=4, seed=7, max_steps=80, concurrency=4,
                  out_dir=tmp)
    values.update(changes)
    return RolloutSpec(**values)


def _outcomes(result) -> list[tuple]:
    return sorted((s.episode, s.seed, s.steps, s.turns, s.reward, tuple(s.achievements), s.termination)
                  for s in result.summaries)


def _steps(run_dir: Path) -> dict[int, list[dict]]:
    per_episode: dict[int, list[dict]] = {}
    for record in iter_jsonl(run_dir / "steps.jsonl"):
        per_episode.setdefault(record["episode"], []).append(record)
    return per_episode


async def test_two_workers_give_the_same_episodes_as_one_process(tmp_path):
    config = AppConfig()
    single = await run_rollout(_spec(tmp_path, run_id="one"), config)
    pooled = await run_rollout(_spec(tmp_path, run_id="two", workers=2), config)
    assert _outcomes(pooled) == _outcomes(single)
    assert _steps(pooled.run_dir) == _steps(single.run_dir)
    assert pooled.record.settings["workers"] == 2


def _fake_modal_map(fail_block: int | None = None):
    """Stands in for ``Function.starmap``: runs the real function body through ``.local()``."""
    from crafter_tui.rollout.modal_app import play_block_remote

    async def fake(inputs):
        for index, args in enumerate(inputs):
            if index == fail_block:
                yield RuntimeError("container lost")
                continue
            yield await asyncio.to_thread(play_block_remote.local, *args)  # Modal runs it elsewhere, not in our loop

    return fake


async def test_modal_fan_out_gives_the_in_process_results(tmp_path):
    config = AppConfig()
    single = await run_rollout(_spec(tmp_path, run_id="one", episodes=3), config)
    fanned = await run_rollout(_spec(tmp_path, run_id="modal", episodes=3, on="modal"), config,
                               executor=ModalExecutor(block_size=2, map_fn=_fake_modal_map()))
    assert _outcomes(fanned) == _outcomes(single)
    assert _steps(fanned.run_dir) == _steps(single.run_dir)
    assert fanned.record.env == "modal"


async def test_a_failed_modal_block_ends_only_its_episodes(tmp_path):
    result = await run_rollout(_spec(tmp_path, run_id="partial", episodes=4, max_steps=20, on="modal"), AppConfig(),
                               executor=ModalExecutor(block_size=2, map_fn=_fake_modal_map(fail_block=1)))
    by_episode = {s.episode: s for s in result.summaries}
    assert sorted(by_episode) == [0, 1, 2, 3]
    assert [by_episode[e].termination for e in (2, 3)] == ["env_error", "env_error"]
    assert "container lost" in by_episode[2].error
    assert all(by_episode[e].termination != "env_error" for e in (0, 1))


class _ListSink:
    """Records what a ``RunSink`` would receive."""

    def __init__(self) -> None:
        self.started_jobs, self.steps, self.summaries = [], [], []

    def started(self, job):
        self.started_jobs.append(job)

    def step(self, record):
        self.steps.append(record)

    def turn(self, record):
        pass

    def progress(self, *args):
        pass

    def episode(self, summary):
        self.summaries.append(summary)


def test_delivery_summarises_episodes_of_a_lost_worker_from_what_arrived(tmp_path):
    sink = _ListSink()
    delivery = Delivery(sink, _spec(tmp_path), "run")
    delivery.deliver([("started", (0, 7, 0)),
                      ("step", {"episode": 0, "step": 1, "reward": 1.0, "new_achievements": ["collect_wood"]}),
                      ("turn", {"episode": 0, "turn": 0})])
    delivery.fail([EpisodeJob(0, 7, 0), EpisodeJob(1, 8, 0)], "worker process died (exit code -9)")
    by_episode = {s.episode: s for s in sink.summaries}
    assert by_episode[0].steps == 1 and by_episode[0].reward == 1.0 and by_episode[0].turns == 1
    assert by_episode[0].achievements == ["collect_wood"] and by_episode[0].termination == "env_error"
    assert by_episode[1].steps == 0 and "exit code -9" in by_episode[1].error
    assert [job.episode for job in sink.started_jobs] == [0, 1]
    delivery.fail([EpisodeJob(0, 7, 0)], "again")
    assert len(sink.summaries) == 2, "an episode is summarised once"


def test_partition_and_executor_choice(tmp_path):
    jobs = [EpisodeJob(i, 10 + i) for i in range(5)]
    assert [[j.episode for j in block] for block in partition(jobs, 2)] == [[0, 2, 4], [1, 3]]
    assert len(partition(jobs[:1], 4)) == 1
    assert isinstance(executor_for(_spec(tmp_path, workers=3)), ProcessPoolExecutor)
    assert isinstance(executor_for(_spec(tmp_path, on="modal")), ModalExecutor)


def test_modal_function_body_runs_locally(tmp_path):
    from crafter_tui.rollout.modal_app import play_block_remote

    spec = _spec(tmp_path, episodes=1, max_steps=10)
    messages = play_block_remote.local(spec.model_dump(mode="json"), AppConfig().model_dump(mode="json"),
                                       "run", [(0, 7, 0)], 1)
    kinds = [kind for kind, _ in messages]
    assert kinds[0] == "started" and kinds[-1] == "episode" and kinds.count("step") == 10
    assert messages[-1][1]["steps"] == 10 and messages[-1][1]["run_id"] == "run"
    assert datetime.fromisoformat(messages[-1][1]["finished_at"]) <= datetime.now(timezone.utc)


async def test_worker_failure_is_reported_not_raised(tmp_path):
    """A worker that cannot play (its spec names an agent kind that does not exist) fails its episodes."""
    broken = _spec(tmp_path, episodes=2, workers=2).model_copy(update={"agent": "nonexistent"})
    sink = _ListSink()
    await ProcessPoolExecutor(2).run(broken, AppConfig(), [EpisodeJob(0, 7), EpisodeJob(1, 8)], "broken", sink)
    assert sorted(s.episode for s in sink.summaries) == [0, 1]
    assert all(s.termination == "env_error" and "nonexistent" in s.error for s in sink.summaries)


async def test_killing_a_worker_ends_only_its_episodes(tmp_path):
    import multiprocessing
    import os
    import signal

    from crafter_tui.rollout.events import EpisodeProgress

    killed: list[int] = []

    def on_event(event) -> None:
        if isinstance(event, EpisodeProgress) and event.episode == 1 and event.step >= 10 and not killed:
            for child in multiprocessing.active_children():
                if child.name == "crafter-worker-1":  # plays episodes 1 and 3 (round-robin blocks)
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    # both episodes of the killed worker long: the expert survives seed 21 for 1,813 steps and seed 23 for 1,514
    # (~0.5 s of play each), so the parent sees episode 1's step 10 long before that worker could finish either
    # (seeds 7 and 9 were used before the expert changed: seed 7 now dies at step 473, and a loaded machine saw
    # that death before it saw step 10). Re-check with the expert's episode lengths if it changes again.
    spec = _spec(tmp_path, run_id="killed", episodes=4, seed=20, max_steps=2000, concurrency=2, workers=2)
    result = await run_rollout(spec, AppConfig(), on_event)
    assert killed, "the worker was killed mid-episode"
    by_episode = {s.episode: s for s in result.summaries}
    assert sorted(by_episode) == [0, 1, 2, 3]
    assert all(by_episode[e].termination != "env_error" for e in (0, 2)), "the other worker's episodes finish"
    for episode in (1, 3):
        assert by_episode[episode].termination == "env_error"
        assert "exit code -9" in by_episode[episode].error
    assert by_episode[1].steps >= 10, "what arrived before the kill is counted"
    assert result.record.status == "finished"
