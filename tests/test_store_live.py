"""A store follows runs that another process is writing, without locks and without false alarms."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from crafter_tui.dataset.export import export_selection, selection_stats
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.validate import validate_file
from crafter_tui.traces.schema import EPISODES_FILE, TURNS_FILE
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import Episode, Turn, summary, turn_lines, write_run

REPO = Path(__file__).resolve().parents[1]


#: Long enough that the reader catches the run half-written: the world steps ~3k times a second.
LIVE_EPISODES = 12


def test_store_queries_a_live_rollout_in_another_process(tmp_path: Path) -> None:
    out = tmp_path / "traces"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crafter_tui", "rollout", "--agent", "scripted", "--episodes", str(LIVE_EPISODES),
         "--max-steps", "300", "--concurrency", "1", "--out", str(out), "--json", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_partial = False
    store = None
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if store is None and any(out.glob("*/run.json")):
                store = TraceStore(out)
                store.ensure_turns()
            if store is not None:
                store.refresh()
                finished, unfinished_turns = store.cursor().execute(
                    "SELECT (SELECT count(*) FROM episodes), (SELECT count(*) FROM turn_index t WHERE NOT EXISTS "
                    "(SELECT 1 FROM episodes e WHERE e.episode = t.episode))").fetchone()
                seen_partial |= finished < LIVE_EPISODES and unfinished_turns > 0  # an episode seen mid-play
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert store is not None and seen_partial
    store.refresh()
    assert store.problems == []  # lines caught mid-write were waited for, not reported
    stats = selection_stats(store, FilterSpec(), tokens=False)
    assert stats.episodes_selected == LIVE_EPISODES
    assert stats.examples_selected == sum(result["turns_per_episode"])
    assert stats.achievements_histogram == {
        str(n): result["achievements_per_episode"].count(n) for n in sorted(set(result["achievements_per_episode"]))}
    exported = export_selection(store, FilterSpec(), tmp_path / "sft.jsonl")
    assert exported.examples == sum(result["turns_per_episode"])
    report = validate_file(tmp_path / "sft.jsonl")
    assert report.ok, report.errors[:3]


WRITER = r"""
import sys, time
from pathlib import Path
path = Path(sys.argv[1]); lines = Path(sys.argv[2]).read_text().splitlines(keepends=True)
with path.open("a") as handle:
    for line in lines:
        half = len(line) // 2
        handle.write(line[:half]); handle.flush(); time.sleep(0.02)   # a torn line is visible for a while
        handle.write(line[half:]); handle.flush(); time.sleep(0.01)
"""


def test_lines_torn_by_a_slow_writer_are_read_once_complete(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    run = write_run(root, "live", [], finished=True)
    episodes = [Episode([Turn(["noop"]), Turn(["do"], ["collect_wood"])]) for _ in range(12)]
    pending = tmp_path / "pending.jsonl"
    turn_text, summary_text = [], []
    for index, episode in enumerate(episodes):
        turns, _ = turn_lines(index, episode, index, "live")
        turn_text += [json.dumps(t) + "\n" for t in turns]
        summary_text.append(summary("live", index, episode, index, "scripted-expert").model_dump_json() + "\n")
    pending.write_text("".join(summary_text))
    (tmp_path / "turns.jsonl").write_text("".join(turn_text))
    store = TraceStore.open(root, turns=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(run / EPISODES_FILE), str(pending)]),
               subprocess.Popen([sys.executable, "-c", WRITER, str(run / TURNS_FILE), str(tmp_path / "turns.jsonl")])]
    counts = []
    try:
        while any(w.poll() is None for w in writers):
            store.refresh()
            counts.append(store.cursor().execute("SELECT count(*) FROM episodes").fetchone()[0])
            time.sleep(0.005)
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
            w.wait()
    store.refresh()
    assert counts == sorted(counts) and counts[-1] <= 12
    assert store.problems == []
    assert store.cursor().execute("SELECT count(*) FROM episodes").fetchone() == (12,)
    assert store.cursor().execute("SELECT count(*) FROM turn_index").fetchone() == (24,)
    assert selection_stats(store, FilterSpec(min_achievements=1), tokens=False).examples_selected == 24
