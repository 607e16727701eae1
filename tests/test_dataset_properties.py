"""Property tests: any valid spec runs without crashing and obeys the selection invariants; hostile
strings in specs stay data (never SQL); any JSONL line is either loaded, reported, or validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crafter_tui.dataset.export import selection_stats
from crafter_tui.dataset.select import selection_sql
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.stats import episode_stats
from crafter_tui.dataset.validate import validate_file
from crafter_tui.traces.loader import EPISODES, TURNS, parse_block
from crafter_tui.traces.store import TraceStore
from crafter_tui.world.rules import ACHIEVEMENTS
from tests.trace_builders import small_store

HOSTILE = st.sampled_from(["model-a", "run-b", "'; DROP TABLE episodes; --", "\" OR 1=1 --", "$min_reward",
                           "run-a' OR '1'='1", "ü", ""]) | st.text(max_size=12)

specs = st.builds(
    FilterSpec,
    min_achievements=st.none() | st.integers(0, 22),
    min_reward=st.none() | st.floats(-5, 5, allow_nan=False),
    max_turns=st.none() | st.integers(1, 6),
    require_termination=st.booleans(),
    models=st.lists(HOSTILE, max_size=2).map(tuple),
    runs=st.lists(HOSTILE, max_size=2).map(tuple),
    achievements=st.lists(st.sampled_from(ACHIEVEMENTS), max_size=2).map(tuple),
    min_progression=st.none() | st.floats(0, 1),
    mode=st.just("turn"),
    keep_before_achievement=st.none() | st.integers(1, 4),
    drop_invalid=st.booleans(),
    dedupe=st.booleans(),
    balance_actions=st.booleans(),
    max_examples=st.none() | st.integers(1, 20),
    validation_split=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(-1000, 1000),
) | st.builds(FilterSpec, mode=st.just("trajectory"), min_achievements=st.none() | st.integers(0, 3),
              keep_before_achievement=st.none() | st.integers(1, 3), dedupe=st.booleans(),
              drop_invalid=st.booleans(), runs=st.lists(HOSTILE, max_size=2).map(tuple),
              max_examples=st.none() | st.integers(1, 4), validation_split=st.sampled_from([0.0, 0.5]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TraceStore:
    return TraceStore.open(small_store(tmp_path_factory.mktemp("p")), turns=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_any_spec_runs_and_keeps_invariants(store: TraceStore, spec: FilterSpec) -> None:
    stats = selection_stats(store, spec, tokens=False)
    fast = episode_stats(store.cursor(), spec)
    assert 0 <= stats.episodes_selected <= stats.episodes_total == 6
    assert fast.episodes_selected == stats.episodes_selected
    assert 0 <= stats.examples_selected <= 17
    if spec.max_examples is not None:
        assert stats.examples_selected <= spec.max_examples
    assert stats.examples_train + stats.examples_valid == stats.examples_selected
    assert sum(stats.achievements_histogram.values()) == stats.episodes_selected
    if fast.examples_exact:
        assert fast.examples_selected == stats.examples_selected
    # the SQL text depends only on three switches, never on the spec's strings or numbers
    assert selection_sql(spec) == selection_sql(FilterSpec(mode=spec.mode, dedupe=spec.dedupe,
                                                           balance_actions=spec.balance_actions))
    assert store.cursor().execute("SELECT count(*) FROM episodes").fetchone() == (6,)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=8)
lines = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"episode": st.integers(-3, 3) | st.text(max_size=3), "turn": st.integers(0, 3),
                           "step": st.integers(0, 9), "observation": st.text(max_size=10),
                           "assistant": json_values, "seed": st.integers(0, 9)}).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=80, deadline=None)
@given(block=st.lists(lines, min_size=1, max_size=5))
def test_any_jsonl_block_loads_or_reports_each_bad_line(block: list[bytes]) -> None:
    data = b"\n".join(block) + b"\n"
    for kind in (EPISODES, TURNS):
        result = parse_block(Path("x.jsonl"), data, 1, kind)
        loaded = result.table.num_rows if result.table is not None else 0
        non_blank = sum(1 for line in block if line.strip())
        assert loaded + len(result.problems) == non_blank
        assert all(1 <= p.line <= len(block) for p in result.problems)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block=st.lists(lines | st.builds(lambda m: json.dumps({"messages": m}).encode(),
                                        st.lists(json_values, max_size=3)), min_size=1, max_size=4))
def test_validator_never_crashes(tmp_path: Path, block: list[bytes]) -> None:
    path = tmp_path / "v.jsonl"
    path.write_bytes(b"\n".join(block) + b"\n")
    report = validate_file(path)
    assert report.lines == len(block)
    assert all(1 <= issue.line <= len(block) for issue in report.errors)
