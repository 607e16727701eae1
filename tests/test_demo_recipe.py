"""The demo's recipes as pipeline specs: the student's DAgger seeds never touch the data, validation or held-out seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.services.demo import FULL, QUICK, demo_config, demo_spec, free_port, run_demo
from crafter_tui.services.pipeline import PipelineState

VALIDATION_SEEDS = range(100, 140)  # where recipes are chosen (40 episodes)


def _seeds(start: int, count: int) -> set[int]:
    return set(range(start, start + count))


def test_the_full_demo_runs_a_dagger_round_on_seeds_of_its_own():
    spec = demo_spec(Path("demo"), FULL)
    assert spec.dagger_rounds >= 1 and spec.eval_seed == 0
    student = _seeds(spec.dagger_seed, spec.dagger_rounds * spec.dagger_episodes)
    for other in (_seeds(spec.data_seed, spec.data_episodes), _seeds(spec.eval_seed, spec.eval_episodes),
                  set(VALIDATION_SEEDS)):
        assert not student & other


def test_the_full_demo_scores_on_enough_held_out_seeds_that_nothing_else_uses():
    spec = demo_spec(Path("demo"), FULL)
    held_out = _seeds(spec.eval_seed, spec.eval_episodes)
    assert len(held_out) >= 20  # the target is a mean over at least 20 held-out seeds
    assert not held_out & (set(VALIDATION_SEEDS) | _seeds(spec.data_seed, spec.data_episodes))


def test_the_quick_demo_stays_plain_behaviour_cloning():
    assert demo_spec(Path("demo-quick"), QUICK).dagger_rounds == 0  # CI's ~2-minute run: one training only


def test_the_recipe_names_the_trainer_threads_and_the_demo_service_gets_them(tmp_path):
    """The figures were measured with the recipe's threads (they set the float summation order), so the
    demo's service trains with them whatever the user's config says; without them the config stands."""
    user = AppConfig()
    user.finetune.threads = 7
    assert FULL.trainer_threads is not None
    assert demo_config(user, tmp_path, free_port(), trainer_threads=FULL.trainer_threads).finetune.threads \
        == FULL.trainer_threads
    assert demo_config(user, tmp_path, free_port(), trainer_threads=QUICK.trainer_threads).finetune.threads == 7
    assert user.finetune.threads == 7  # the caller's config is not changed


async def test_a_demo_folder_of_another_recipe_is_refused_before_anything_starts(tmp_path):
    """Resuming it would report the other recipe's results as this one's; nothing in it is touched."""
    state = PipelineState(tmp_path)
    state.adopt(demo_spec(tmp_path, QUICK))
    state.save("rollout", finished=True)
    before = sorted(p.name for p in tmp_path.iterdir()), (tmp_path / "pipeline.json").read_text()
    with pytest.raises(UserError, match=r"other settings \(.*data_episodes: 60 -> 150"):
        await run_demo(AppConfig(), tmp_path, FULL)
    assert (sorted(p.name for p in tmp_path.iterdir()), (tmp_path / "pipeline.json").read_text()) == before
