"""The fast export path (``dataset/lines.py``, ``dataset/helper.py``) writes exactly the reference's bytes.

The reference is ``examples.iter_examples`` (messages from ``build_messages``, encoded with
``json``); the export falls back to it when ``composition_holds`` fails, which the tests force.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crafter_tui.agents.prompting import interact_message
from crafter_tui.dataset import export as export_module
from crafter_tui.dataset.export import export_selection, validation_path
from crafter_tui.dataset import helper as helper_module
from crafter_tui.dataset.helper import plan_chunks
from crafter_tui.dataset import writer as writer_module
from crafter_tui.dataset.lines import all_run_rows, composition_holds, encode_text, encode_value
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import Episode, Turn, small_store, write_run

SPECS = [
    FilterSpec(),
    FilterSpec(drop_invalid=True),
    FilterSpec(dedupe=True),
    FilterSpec(balance_actions=True, seed=3),
    FilterSpec(keep_before_achievement=2),
    FilterSpec(mode="trajectory"),
    FilterSpec(mode="trajectory", keep_before_achievement=2, drop_invalid=True),
    FilterSpec(text_actions=True),
    FilterSpec(drop_reasoning=True),
    FilterSpec(text_actions=True, drop_reasoning=True, mode="trajectory"),
    FilterSpec(goal_reasoning=True),
    FilterSpec(goal_reasoning=True, text_actions=True, mode="trajectory"),
    FilterSpec(validation_split=0.3, seed=7),
    FilterSpec(max_examples=5, seed=1),
    FilterSpec(min_achievements=1, runs=("run-b", "run-c")),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TraceStore:
    root = small_store(tmp_path_factory.mktemp("fast"))
    odd = "caf\u00e9 \x7f \"q\" 0.00001 1e-05"
    write_run(root, "run-c", [  # no history window; odd characters in observations
        Episode([Turn(["do"], observation=odd), Turn(["noop"], ["collect_wood"]), Turn(["move_left"], valid=False)]),
        Episode([Turn(["do", "noop"]), Turn(["sleep"], ["wake_up"])]),
    ], history_turns=0)
    write_run(root, "run-d", [  # a long window over long episodes
        Episode([Turn(["do"], ["collect_wood"] if i == 7 else []) for i in range(9)]),
        Episode([Turn(["noop"], valid=i % 3 != 1) for i in range(6)]),
    ], history_turns=5)
    write_run(root, "run-e", [  # recorded goals: the expert's own, a DAgger label's, none, not a string
        Episode([Turn(["move_up"], extra={"goal": "wood"}), Turn(["do"], ["collect_wood"], extra={"goal": "wood"})]),
        Episode([Turn(["move_left"], extra={"goal": "drink", "label_goal": "table", "executed_by": "student"}),
                 Turn(["noop"])]),
        Episode([Turn(["sleep"], extra={"goal": 3}), Turn(["do"], extra={"goal": "wood"})]),
    ], history_turns=1)
    return TraceStore.open(root, turns=True)


def _outputs(path: Path) -> list[bytes]:
    valid = validation_path(path)
    return [path.read_bytes()] + ([valid.read_bytes()] if valid.exists() else [])


def _reference(store: TraceStore, spec: FilterSpec, path: Path, monkeypatch: pytest.MonkeyPatch,
               fmt: str = "jsonl") -> int:
    with monkeypatch.context() as patch:
        patch.setattr(export_module, "composition_holds", lambda: False)
        return export_selection(store, spec, path, fmt=fmt).examples  # type: ignore[arg-type]


def test_the_probe_holds_for_todays_build_messages() -> None:
    assert composition_holds()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.model_dump(
    exclude_defaults=True).items()) or "default")
def test_fast_and_parallel_paths_write_the_reference_bytes(store: TraceStore, spec: FilterSpec, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    examples = _reference(store, spec, tmp_path / "ref.jsonl", monkeypatch)
    assert examples > 0
    expected = _outputs(tmp_path / "ref.jsonl")
    fast = export_selection(store, spec, tmp_path / "fast.jsonl", parallel=False)
    assert _outputs(tmp_path / "fast.jsonl") == expected
    both = export_selection(store, spec, tmp_path / "two.jsonl", parallel=True)
    assert _outputs(tmp_path / "two.jsonl") == expected
    with monkeypatch.context() as patch:  # many chunks: the helper writes every second one into the same files
        patch.setattr(helper_module, "CHUNK_ROWS", 2)
        many = export_selection(store, spec, tmp_path / "many.jsonl", parallel=True)
    assert _outputs(tmp_path / "many.jsonl") == expected
    assert (many.train, many.valid) == (both.train, both.valid)
    assert fast.examples == both.examples == examples
    assert (both.train, both.valid) == (fast.train, fast.valid)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # no temp or part files left


def test_parquet_from_the_fast_path_equals_the_reference(store: TraceStore, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FilterSpec(drop_reasoning=True)
    _reference(store, spec, tmp_path / "ref.parquet", monkeypatch, fmt="parquet")
    export_selection(store, spec, tmp_path / "fast.parquet", fmt="parquet")
    assert pq.read_table(tmp_path / "fast.parquet").equals(pq.read_table(tmp_path / "ref.parquet"))


def test_a_helper_failure_fails_the_export_and_leaves_no_files(store: TraceStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    parent, real = os.getpid(), helper_module.lines_of_run

    def broken(*args: object, **kwargs: object) -> object:
        if os.getpid() != parent:  # only in the forked helper
            raise OSError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(helper_module, "lines_of_run", broken)
    monkeypatch.setattr(helper_module, "CHUNK_ROWS", 3)  # so the helper has chunks to write
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_selection(store, FilterSpec(), tmp_path / "x.jsonl", parallel=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [
    interact_message(["do"], "go. now 2.5", "c1"), {"a": 1.5}, {"a": 1e-5}, {"a": 1e16}, {"a": -3}, {"a": "\x7f"},
    {"a": "caf\u00e9"}, {"a": 2**70}, {"a": [None, True, False, "e+1", "x-1"]}, {"a": "\u2028\n\t\x00"},
])
def test_encode_value_is_json_dumps(value: object) -> None:
    assert encode_value(value, True) == json.dumps(value, separators=(",", ":"))
    assert encode_value(value, False) == json.dumps(value, separators=(",", ":"))


def test_nan_from_the_json_fallback_is_spelled_like_json() -> None:
    assert encode_value({"a": math.nan}, False) == '{"a":NaN}'


def test_chunks_cut_runs_at_episode_boundaries_and_cover_every_row(store: TraceStore) -> None:
    from crafter_tui.dataset.select import build_selection

    cursor = store.cursor()
    build_selection(cursor, FilterSpec())
    rows = all_run_rows(cursor)
    assert [run.run_id for run in rows] == sorted(store.runs)
    for run in rows:  # each run's slice of the one fetch: every line of its selected episodes' attempts
        expected = cursor.execute("""SELECT ti.episode, ti.line_offset, ti.line_bytes FROM turn_index ti
            JOIN (SELECT DISTINCT run_id, episode, attempt FROM selection) USING (run_id, episode, attempt)
            WHERE ti.run_id = ? ORDER BY ti.episode, ti.line_offset""", [run.run_id]).fetchall()
        assert list(zip(run.lines.episode.tolist(), run.lines.offset.tolist(), run.lines.size.tolist())) == expected
        assert set(run.lines.episode.tolist()) == set(run.episode.tolist())
    for size in (1, 3, 4, 1000):
        chunks = plan_chunks(rows, size)
        for index, run in enumerate(rows):
            mine = [c for c in chunks if c.run == index]
            assert [(c.start, c.stop) for c in mine] == list(zip([0] + [c.stop for c in mine[:-1]],
                                                                 [c.stop for c in mine]))
            assert mine[-1].stop == len(run.turn) and mine[-1].lines.stop == len(run.lines)
            for c in mine:
                episodes = set(run.episode[c.start:c.stop].tolist())
                assert set(run.lines.episode[c.lines].tolist()) == episodes  # the chunk's lines, no other
                assert c.start == 0 or run.episode[c.start - 1] != run.episode[c.start]  # never inside an episode
                last_start = max(i for i in range(c.start, c.stop) if run.episode[i - 1] != run.episode[i] or i == 0)
                assert last_start - c.start < size  # only the chunk's last episode may take it past ``size``
    assert len(plan_chunks(rows, 1)) == sum(len(set(r.episode.tolist())) for r in rows)
    assert len(plan_chunks(rows, 2)) > 2 * len(rows)  # the parallel tests above really share the work


@pytest.mark.parametrize("value", [
    "".join(chr(c) for c in range(128)), "plain text. 6/9.", "caf\u00e9", "\u2028", "a\x7fb", "", None, 3, ["x"],
])
def test_encode_text_is_json_dumps(value: object) -> None:
    assert encode_text(value) == json.dumps(value, separators=(",", ":")).encode("ascii")


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def half_writev(fd: int, pieces: list[bytes]) -> int:
        data = b"".join(pieces)
        return os.write(fd, data[: max(1, len(data) // 2)])

    monkeypatch.setattr(writer_module, "_writev", half_writev)
    lines = [(b"{", b"%d" % i, b"}\n") for i in range(3000)]
    with (tmp_path / "out").open("wb") as handle:
        out = writer_module.PieceWriter(handle.fileno())
        for pieces in lines:
            out.add(pieces)
        out.flush()
    assert (tmp_path / "out").read_bytes() == b"".join(b"".join(p) for p in lines)


def test_positioned_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def half_pwritev(fd: int, pieces: list[bytes], offset: int) -> int:
        data = b"".join(pieces)
        return os.pwrite(fd, data[: max(1, len(data) // 2)], offset)

    monkeypatch.setattr(writer_module, "_pwritev", half_pwritev)
    first = [b"line %d\n" % i for i in range(1500)]
    second = [b"more %d\n" % i for i in range(1500)]
    path = tmp_path / "out"
    with path.open("wb") as handle:  # the second range first, as the other process may write it
        end = writer_module.pwrite_pieces(handle.fileno(), second, sum(map(len, first)))
        assert writer_module.pwrite_pieces(handle.fileno(), first, 0) == sum(map(len, first))
    assert end == path.stat().st_size
    assert path.read_bytes() == b"".join(first + second)


def test_run_batches_keep_runs_whole_and_fetches_small() -> None:
    from crafter_tui.dataset.lines import run_batches

    assert run_batches([5, 5, 5, 5], 10) == [(0, 1), (2, 3)]
    assert run_batches([5, 20, 5], 10) == [(0, 0), (1, 1), (2, 2)]  # a run bigger than the limit alone
    assert run_batches([3, 3, 3], 100) == [(0, 2)]
    assert run_batches([], 10) == []


def test_all_run_rows_in_small_fetches_equals_one_fetch(store: TraceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from crafter_tui.dataset import lines as lines_module
    from crafter_tui.dataset.select import build_selection

    cursor = store.cursor()
    build_selection(cursor, FilterSpec(validation_split=0.3))
    whole = lines_module.all_run_rows(cursor)
    monkeypatch.setattr(lines_module, "FETCH_ROWS", 1)
    pieces = lines_module.all_run_rows(cursor)
    assert [r.run_id for r in pieces] == [r.run_id for r in whole] == sorted(store.runs)
    for a, b in zip(whole, pieces):
        for name in ("episode", "attempt", "turn", "key", "is_valid"):
            assert getattr(a, name).tolist() == getattr(b, name).tolist()
        for name in ("episode", "offset", "size"):
            assert getattr(a.lines, name).tolist() == getattr(b.lines, name).tolist()
