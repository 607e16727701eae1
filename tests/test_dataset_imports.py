"""The trace store and the SFT export import no game engine (crafter's engine pulls in numba:
~65 MB resident and ~1 s per process), yet use exactly Crafter's vocabulary."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("crafter", "numba", "opensimplex", "crafter_tui.world.env")


def test_export_and_store_import_no_game_engine() -> None:
    code = ("import sys; import crafter_tui.dataset.export, crafter_tui.traces.store, crafter_tui.dataset.validate; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_rules_read_crafters_data_unchanged() -> None:
    import crafter.constants as constants

    from crafter_tui.world import rules

    assert rules.ACTIONS == tuple(constants.actions)
    assert rules.ACHIEVEMENTS == tuple(constants.achievements)
    assert rules.MATERIALS == tuple(constants.materials)
    assert rules.WALKABLE == tuple(constants.walkable)
    assert rules.ITEMS == tuple(constants.items)
    assert rules.MAX_ITEM == {name: info["max"] for name, info in constants.items.items()}
    assert (rules.PLACE_RULES, rules.MAKE_RULES, rules.COLLECT_RULES) == (
        dict(constants.place), dict(constants.make), dict(constants.collect))


def test_local_view_matches_the_engine() -> None:
    from crafter_tui.world import env, rules, text_obs

    assert rules.LOCAL_VIEW == env.LOCAL_VIEW
    assert text_obs.LOCAL_VIEW is rules.LOCAL_VIEW
