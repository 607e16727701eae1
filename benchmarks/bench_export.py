"""SFT export speed and memory: stream every turn of a synthetic store as OpenAI chat JSONL.

Default: a 100k-episode store (~1M turn examples, history_turns 2, tool calls); ``--small``:
2k episodes (~20k examples). Reports examples, seconds, examples/s and peak RSS of this
process (store open + export: the export itself streams with constant memory), and the peak
RSS of the forked helper that writes every second chunk of episodes (shared pages counted).
CPU seconds of both processes too: on a shared machine they say what the export costs when
the wall time cannot (other sessions' processes get an equal share of the CPU whatever their
nice value while the kernel groups processes by session: ``/proc/sys/kernel/sched_autogroup_enabled``).

    python benchmarks/bench_export.py [--small] [--store DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import emit  # noqa: E402 - benchmarks run as scripts from a checkout



def _cpu_seconds() -> tuple[float, float, float, float]:
    """User and system CPU seconds of this process and of its finished children (the export helper)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime, own.ru_stime, children.ru_utime, children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--store", type=Path, default=None, help="reuse a store made by gen_synthetic_store.py")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the 4 GB output goes (default: the temp dir; /dev/shm leaves the disk out)")
    args = parser.parse_args()
    from gen_synthetic_store import generate

    from crafter_tui.dataset.export import export_selection
    from crafter_tui.dataset.spec import FilterSpec
    from crafter_tui.traces.store import TraceStore

    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    root = args.store
    try:
        if root is None:
            root = tmp / "traces"
            info = generate(root, args.episodes or (2_000 if args.small else 100_000))
            emit("synthetic_store", info["episodes"], "episodes", None, turns=info["turns"], bytes=info["bytes"],
                 generate_s=round(info["seconds"], 1))
        started = time.perf_counter()
        store = TraceStore.open(root, turns=True)
        emit("store_open_with_turns_s", time.perf_counter() - started, "s", None)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        out_dir = Path(tempfile.mkdtemp(prefix="bench_export_out_", dir=args.out_dir)) if args.out_dir else tmp
        try:
            result = export_selection(store, FilterSpec(), out_dir / "sft.jsonl")
        finally:
            if out_dir != tmp:
                shutil.rmtree(out_dir, ignore_errors=True)
        seconds = time.perf_counter() - started
        cpu = [round(after - before, 2) for before, after in zip(cpu_before, _cpu_seconds())]
        goal = "<= 15 s for 1M examples" if not args.small else None
        # CPU seconds too: on a shared, loaded machine they say what the export costs when wall time cannot
        emit("export_seconds", seconds, "s", goal, examples=result.examples, bytes=result.bytes,
             cpu_user_s=cpu[0], cpu_sys_s=cpu[1], helper_cpu_user_s=cpu[2], helper_cpu_sys_s=cpu[3])
        emit("export_examples_per_s", result.examples / seconds, "examples/s", ">= 66,667/s (1M in 15 s)")
        emit("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB", "<= 500 MB",
             rss_after_open_mb=round(rss_before, 1),
             helper_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1))
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
