"""The export's order is a function of the data: (run, episode, turn), whatever order the turn lines
were appended in (a run recorded with ``--workers N`` interleaves its episodes differently each time)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from crafter_tui.dataset import export as export_module
from crafter_tui.dataset import helper as helper_module
from crafter_tui.dataset.export import export_selection, validation_path
from crafter_tui.dataset.source import LineRows, read_boundaries, read_lines
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.traces.schema import EPISODES_FILE, TURNS_FILE
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import Episode, Turn, write_run

SPECS = [
    FilterSpec(),
    FilterSpec(dedupe=True, drop_invalid=True),
    FilterSpec(validation_split=0.4, seed=5),
    FilterSpec(max_examples=7, seed=2, balance_actions=True),
    FilterSpec(mode="trajectory", keep_before_achievement=2),
    FilterSpec(mode="trajectory", text_actions=True),
]


def _episodes(run: int) -> list[Episode]:
    rng = random.Random(run)
    actions = ["noop", "do", "move_left", "sleep"]
    return [Episode([Turn([rng.choice(actions)], ["collect_wood"] if rng.random() < 0.2 else [],
                          valid=rng.random() > 0.15) for _ in range(rng.randint(1, 7))])
            for _ in range(6)]


def _in_order(root: Path) -> Path:
    for run in range(3):
        write_run(root, f"run-{run}", _episodes(run), history_turns=run)
    return root


def _interleaved(source: Path, target: Path, seed: int) -> Path:
    """The same runs with each run's turn lines (and summaries) as parallel workers might append them:
    episodes interleaved at random, each episode's own lines still in turn order."""
    shutil.copytree(source, target)
    rng = random.Random(seed)
    for run_dir in sorted(target.iterdir()):
        by_episode: dict[int, list[bytes]] = {}
        for raw in (run_dir / TURNS_FILE).read_bytes().splitlines(keepends=True):
            by_episode.setdefault(json.loads(raw)["episode"], []).append(raw)
        queues, lines = list(by_episode.values()), []
        while queues:
            queue = rng.choice(queues)
            lines.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
        (run_dir / TURNS_FILE).write_bytes(b"".join(lines))
        summaries = (run_dir / EPISODES_FILE).read_bytes().splitlines(keepends=True)
        rng.shuffle(summaries)
        (run_dir / EPISODES_FILE).write_bytes(b"".join(summaries))
    return target


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[TraceStore]:
    base = tmp_path_factory.mktemp("order")
    ordered = _in_order(base / "ordered")
    roots = [ordered, _interleaved(ordered, base / "mixed-1", 1), _interleaved(ordered, base / "mixed-2", 2)]
    assert len({(root / "run-1" / TURNS_FILE).read_bytes() for root in roots}) == 3  # really different line orders
    return [TraceStore.open(root, turns=True) for root in roots]


def _export(store: TraceStore, spec: FilterSpec, path: Path, path_kind: str,
            monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    with monkeypatch.context() as patch:
        if path_kind == "reference":
            patch.setattr(export_module, "composition_holds", lambda: False)
        patch.setattr(helper_module, "CHUNK_ROWS", 3)  # parallel: the two processes alternate chunks
        export_selection(store, spec, path, parallel=path_kind == "parallel")
    valid = validation_path(path)
    return [path.read_bytes()] + ([valid.read_bytes()] if valid.exists() else [])


@pytest.mark.parametrize("path_kind", ["reference", "fast", "parallel"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.model_dump(
    exclude_defaults=True).items()) or "default")
def test_any_line_order_exports_the_same_bytes(stores: list[TraceStore], spec: FilterSpec, path_kind: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = [_export(store, spec, tmp_path / f"{n}.jsonl", path_kind, monkeypatch) for n, store in enumerate(stores)]
    assert outputs[0][0]  # not vacuous
    assert outputs[1] == outputs[0]
    assert outputs[2] == outputs[0]


def test_examples_come_in_run_episode_turn_order(stores: list[TraceStore]) -> None:
    from crafter_tui.dataset.lines import iter_lines
    from crafter_tui.dataset.select import build_selection

    store = stores[2]  # the interleaved one
    cursor = store.cursor()
    build_selection(cursor, FilterSpec())
    runs = {run_id: (state.path, state.record) for run_id, state in store.runs.items()}
    keys = [(line.run_id, line.episode, line.turns[-1])
            for line in iter_lines(cursor, runs, mode="turn", text_actions=False)]
    assert len(keys) > 20 and keys == sorted(keys)


def test_read_lines_reads_consecutive_lines_together_and_scattered_ones_alone(tmp_path: Path) -> None:
    import numpy as np

    lines = [b"{\"n\":%d}" % i + b"x" * i for i in range(40)]
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    offsets = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
    sizes = np.array([len(line) + 1 for line in lines])
    order = [3, 4, 5, 6, 0, 1, 39, 20, 21, 22]
    rows = LineRows(np.zeros(len(order), dtype=np.int64), offsets[order], sizes[order])
    assert list(read_lines(path, rows)) == [lines[i] for i in order]
    assert read_boundaries(rows).tolist() == [0, 4, 6, 7, 10]
    assert list(read_lines(path, rows, block=30)) == [lines[i] for i in order]  # a run split across reads
    assert read_boundaries(rows, block=30).tolist() == [0, 3, 4, 6, 7, 9, 10]
    path.write_bytes(b"{}\n" * 3)  # rewritten since the store saw it: bytes come back, no crash
    assert len(list(read_lines(path, rows))) == len(order)
