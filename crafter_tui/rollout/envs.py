"""Where an episode's world lives: in this process, or behind the env service.

The runner speaks to both through ``EpisodeEnv``; ``remote`` environments implement the same
methods over HTTP (see ``crafter_tui.rollout.env_client``), so the same seeds and agent give
the same trajectories either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from crafter_tui.world.env import CrafterWorld, StepOutcome, WorldState

if TYPE_CHECKING:
    from crafter_tui.config import AppConfig
    from crafter_tui.rollout.spec import RolloutSpec


class EpisodeEnv(Protocol):
    """One Crafter episode at a time."""

    async def reset(self, seed: int) -> WorldState: ...

    async def step(self, action: int) -> StepOutcome: ...

    async def semantic_map(self) -> np.ndarray:
        """The whole map (privileged), for the scripted expert."""
        ...

    async def close(self) -> None: ...


class LocalEnv:
    """The embedded world: no I/O, so each call completes without yielding to the loop."""

    def __init__(self, difficulty: str, max_steps: int) -> None:
        self.world = CrafterWorld(difficulty, max_steps=max_steps)

    async def reset(self, seed: int) -> WorldState:
        return self.world.reset(seed)

    async def step(self, action: int) -> StepOutcome:
        return self.world.step(action)

    async def semantic_map(self) -> np.ndarray:
        return self.world.semantic_map()

    async def close(self) -> None:
        return None


def make_env(spec: RolloutSpec, config: AppConfig) -> EpisodeEnv:
    """A fresh environment for one episode, local or behind the env service."""
    if spec.env == "remote":
        from crafter_tui.rollout.env_client import RemoteEnv

        token = config.service.token.get_secret_value() if config.service.token else None
        return RemoteEnv(spec.env_url or config.service.base_url, token=token, difficulty=spec.difficulty,
                         max_steps=spec.max_steps, timeout=config.service.timeout)
    return LocalEnv(spec.difficulty, spec.max_steps)
