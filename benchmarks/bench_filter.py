"""Trace store speed: first open, compacted open, filter statistics after a threshold change, memory.

Builds a synthetic store in the real file format (``gen_synthetic_store``: 100k episodes /
~1M turns / ~3M steps; ``--small``: 2k episodes) in a temp dir, then measures:

- ``store_open_jsonl_s``: first open straight from the JSONL files (episodes table);
- ``store_open_compacted_s``: open after ``traces compact`` (Parquet snapshots) -- the goal;
- ``filter_stats_p95_ms``: episode-level statistics after each threshold change (warm), the
  query the filter screen re-runs on every keystroke; also the turn-level (full) statistics;
- ``peak_rss_mb`` of this process after open + queries.

    python benchmarks/bench_filter.py [--small] [--store DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import emit, peak_rss_mb  # noqa: E402 - benchmarks run as scripts from a checkout




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--store", type=Path, default=None, help="reuse a store made by gen_synthetic_store.py")
    parser.add_argument("--episodes", type=int, default=None)
    args = parser.parse_args()
    from gen_synthetic_store import generate

    from crafter_tui.dataset.spec import FilterSpec
    from crafter_tui.dataset.stats import episode_stats, turn_stats
    from crafter_tui.traces.store import COMPACT_DIR, TraceStore

    tmp = None
    root = args.store
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_filter_"))
        root = tmp / "traces"
        info = generate(root, args.episodes or (2_000 if args.small else 100_000))
        emit("synthetic_store", info["episodes"], "episodes", None, turns=info["turns"], steps=info["steps"],
             bytes=info["bytes"], generate_s=round(info["seconds"], 1))
    try:
        for folder in root.glob(f"*/{COMPACT_DIR}"):
            shutil.rmtree(folder)
        started = time.perf_counter()
        store = TraceStore.open(root)
        emit("store_open_jsonl_s", time.perf_counter() - started, "s", "<= 2 s (goal met via compacted open)",
             episodes=store.cursor().execute("SELECT count(*) FROM episodes").fetchone()[0])
        started = time.perf_counter()
        store.compact()
        emit("store_compact_s", time.perf_counter() - started, "s", None)
        store.close()
        started = time.perf_counter()
        store = TraceStore.open(root)
        emit("store_open_compacted_s", time.perf_counter() - started, "s", "<= 2 s")
        cursor = store.cursor()
        episode_stats(cursor, FilterSpec())  # warm
        times = []
        for i in range(60):
            spec = FilterSpec(min_achievements=i % 7, min_reward=None if i % 3 else float(i % 5),
                              require_termination=bool(i % 2), max_turns=None if i % 4 else 12)
            t0 = time.perf_counter()
            episode_stats(cursor, spec)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        emit("filter_stats_p50_ms", statistics.median(times), "ms", None)
        emit("filter_stats_p95_ms", times[int(0.95 * len(times)) - 1], "ms", "<= 30 ms (warm)")
        started = time.perf_counter()
        store.ensure_turns()
        emit("turn_index_load_s", time.perf_counter() - started, "s", None, compacted=True)
        full = []
        for n in (0, 2, 4):
            t0 = time.perf_counter()
            turn_stats(cursor, FilterSpec(min_achievements=n, keep_before_achievement=3, dedupe=True))
            full.append(time.perf_counter() - t0)
        emit("turn_level_stats_median_s", statistics.median(full), "s", None)
        emit("peak_rss_mb", peak_rss_mb(), "MB", "<= 1024 MB (store open + queried)")
        store.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
