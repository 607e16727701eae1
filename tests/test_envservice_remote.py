"""RemoteEnv and ``rollout --env remote`` against the real service on loopback."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from crafter_tui.config import AppConfig
from crafter_tui.rollout.envs import LocalEnv
from crafter_tui.rollout.events import EpisodeProgress
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.rollout.env_client import EnvServiceClient, EnvServiceError, RemoteEnv
from crafter_tui.servers.env_server import BackgroundEnvService, EnvServiceSettings
from crafter_tui.services.rollouts import run_rollout
from crafter_tui.traces.jsonl import iter_jsonl


@pytest.fixture(scope="module")
def service():
    with BackgroundEnvService(EnvServiceSettings(port=0)) as svc:
        yield svc


async def test_remote_env_returns_the_same_objects_as_the_local_world(service):
    rng = random.Random(3)
    local, remote = LocalEnv("normal", 120), RemoteEnv(service.base_url, difficulty="normal", max_steps=120)
    try:
        assert await remote.reset(17) == await local.reset(17)
        for _ in range(120):
            action = rng.randrange(17)
            expected, got = await local.step(action), await remote.step(action)
            assert got == expected
            if rng.random() < 0.1:
                assert np.array_equal(await remote.semantic_map(), await local.semantic_map())
                assert (await remote.semantic_map()).dtype == (await local.semantic_map()).dtype
            if expected.done:
                break
        assert expected.done and expected.truncated or expected.terminated
    finally:
        await remote.close()


async def test_client_raises_env_service_error_after_retries_when_unreachable():
    client = EnvServiceClient("http://127.0.0.1:9", retries=2, backoff=0.01)
    try:
        with pytest.raises(EnvServiceError, match="unreachable after 3 attempts"):
            await client.health()
    finally:
        await client.aclose()


async def test_client_reports_http_errors_with_detail(service):
    client = EnvServiceClient(service.base_url)
    try:
        with pytest.raises(EnvServiceError) as info:
            await client.step("missing", [0])
        assert info.value.status == 404 and "unknown env_id" in str(info.value)
    finally:
        await client.aclose()


def _spec(tmp: Path, **changes) -> RolloutSpec:
    values = dict(agent="random", model="random", episodes=3, seed=40, max_steps=60, concurrency=3,
                  out_dir=tmp)
    values.update(changes)
    return RolloutSpec(**values)


def _records(run_dir: Path, name: str) -> dict[int, list[dict]]:
    per_episode: dict[int, list[dict]] = {}
    for record in iter_jsonl(run_dir / name):
        per_episode.setdefault(record["episode"], []).append(record)
    return per_episode


def _outcome(summary) -> tuple:
    return (summary.episode, summary.seed, summary.steps, summary.turns, summary.reward,
            summary.achievements, summary.termination)


async def test_remote_rollout_equals_in_process_rollout_step_for_step(service, tmp_path):
    config = AppConfig()
    local = await run_rollout(_spec(tmp_path, run_id="local"), config)
    remote = await run_rollout(_spec(tmp_path, run_id="remote", env="remote", env_url=service.base_url), config)
    assert [_outcome(s) for s in remote.summaries] == [_outcome(s) for s in local.summaries]
    assert _records(remote.run_dir, "steps.jsonl") == _records(local.run_dir, "steps.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows]  # noqa: E731
    local_turns, remote_turns = _records(local.run_dir, "turns.jsonl"), _records(remote.run_dir, "turns.jsonl")
    assert {e: strip(r) for e, r in remote_turns.items()} == {e: strip(r) for e, r in local_turns.items()}
    assert remote.record.env == service.base_url


async def test_killing_the_service_mid_run_ends_affected_episodes_with_the_reason(tmp_path):
    svc = BackgroundEnvService(EnvServiceSettings(port=0)).start()
    killed = threading.Event()

    def on_event(event) -> None:
        # episode 0 has finished; episode 1 is mid-way when the service goes away
        if isinstance(event, EpisodeProgress) and event.episode == 1 and event.step >= 10 and not killed.is_set():
            killed.set()
            svc.server.should_exit = True

    try:
        spec = _spec(tmp_path, episodes=3, concurrency=1, max_steps=300, env="remote", env_url=svc.base_url,
                     run_id="killed")
        result = await run_rollout(spec, AppConfig(), on_event)
    finally:
        svc.stop()
    assert killed.is_set()
    by_episode = {s.episode: s for s in result.summaries}
    assert sorted(by_episode) == [0, 1, 2], "every episode has a summary"
    assert by_episode[0].termination in ("death", "max_steps"), "the finished episode is kept"
    for episode in (1, 2):
        assert by_episode[episode].termination == "env_error"
        assert "unreachable" in by_episode[episode].error
    assert by_episode[1].steps >= 10, "the cut episode keeps the steps it played"
    assert result.record.status == "finished"
