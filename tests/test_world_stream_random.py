"""StreamRandom gives numpy RandomState's values and state, draw for draw."""

from __future__ import annotations

import random

import numpy as np
import pytest

from crafter_tui.world import stream_random
from crafter_tui.world.stream_random import StreamRandom

RANGES = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 7), (0, 13), (0, 100), (3, 9), (-5, 5),
          (0, 2**31 - 1), (0, 2**32 - 1), (0, 2**32), (0, 2**40)]


def _script(rng: random.Random, length: int) -> list[tuple]:
    """A random interleaving of the calls Crafter makes, plus the ones that must go to numpy."""
    calls = []
    for _ in range(length):
        kind = rng.random()
        if kind < 0.45:
            calls.append(("uniform",))
        elif kind < 0.9:
            calls.append(("randint", *rng.choice(RANGES)))
        elif kind < 0.95:
            calls.append(("uniform_sized", rng.randrange(1, 40)))
        elif kind < 0.98:
            calls.append(("randint_sized", rng.randrange(1, 40)))
        else:
            calls.append(("state",))
    return calls


def _play(generator, calls: list[tuple]) -> list:
    out = []
    for call in calls:
        if call[0] == "uniform":
            out.append(generator.uniform())
        elif call[0] == "randint":
            out.append(generator.randint(call[1], call[2]))
        elif call[0] == "uniform_sized":
            out.append(generator.uniform(size=call[1]).tolist())
        elif call[0] == "randint_sized":
            out.append(generator.randint(0, 6, size=call[1]).tolist())
        else:
            name, key, pos, has_gauss, gauss = generator.get_state()
            out.append((name, key.tolist(), pos, has_gauss, gauss))
    return out


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_values_and_states_equal_numpys_across_refills(seed, monkeypatch):
    monkeypatch.setattr(stream_random, "BLOCK", 37)  # many refills, including mid-draw ones
    calls = _script(random.Random(seed), 3000)
    expected = _play(np.random.RandomState(seed), calls)
    got = _play(StreamRandom(np.random.RandomState(seed)), calls)
    assert got == expected
    assert all(type(a) is type(b) for a, b in zip(got, expected))


def test_set_state_and_other_distributions_pass_through_at_the_right_position():
    plain, fast = np.random.RandomState(4), StreamRandom(np.random.RandomState(4))
    for generator in (plain, fast):
        [generator.uniform() for _ in range(5)]
    saved = plain.get_state()
    assert fast.normal() == plain.normal()
    fast.set_state(saved)
    plain.set_state(saved)
    assert [fast.randint(0, 4) for _ in range(50)] == [plain.randint(0, 4) for _ in range(50)]
    assert fast.random_sample(3).tolist() == plain.random_sample(3).tolist()


def test_empty_ranges_fail_like_numpy():
    with pytest.raises(ValueError):
        StreamRandom(np.random.RandomState(0)).randint(0, 0)
