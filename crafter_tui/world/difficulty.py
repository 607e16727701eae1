"""Difficulty presets: documented changes to Crafter's world parameters.

``normal`` is stock Crafter 1.8.3, value for value. The other presets scale mob spawning
(at world generation and in the per-chunk balancing that runs every 10 steps) and resource
density. Every change goes through the world's seeded RNG, so each preset is as
deterministic as stock Crafter.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DifficultyName = Literal["peaceful", "easy", "normal", "hard"]


class Difficulty(BaseModel):
    """World parameters a preset changes. 1.0 means 'as stock Crafter'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DifficultyName
    zombies: float = Field(1.0, ge=0, description="scale of zombie spawning (worldgen and balancing)")
    skeletons: float = Field(1.0, ge=0, description="scale of skeleton spawning in tunnels")
    cows: float = Field(1.0, ge=0, description="scale of cow spawning")
    trees: float = Field(1.0, ge=0, description="scale of tree density in grassland")
    ores: float = Field(1.0, ge=0, description="scale of coal, iron and diamond density")

    def describe(self) -> str:
        """One line for help texts and run records."""
        return (
            f"{self.name}: zombies x{self.zombies:g}, skeletons x{self.skeletons:g}, "
            f"cows x{self.cows:g}, trees x{self.trees:g}, ores x{self.ores:g}"
        )


PRESETS: dict[str, Difficulty] = {
    "peaceful": Difficulty(name="peaceful", zombies=0.0, skeletons=0.0, cows=1.5, trees=1.5, ores=1.5),
    "easy": Difficulty(name="easy", zombies=0.4, skeletons=0.5, cows=1.3, trees=1.25, ores=1.25),
    "normal": Difficulty(name="normal"),
    "hard": Difficulty(name="hard", zombies=2.0, skeletons=1.5, cows=0.7, trees=0.8, ores=0.8),
}


def get_difficulty(name: str) -> Difficulty:
    """The preset called ``name``; a ``ValueError`` lists the known presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown difficulty {name!r}; choose one of {', '.join(PRESETS)}") from None
