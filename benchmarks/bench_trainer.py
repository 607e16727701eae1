"""Trainer throughput on CPU: tokens/s (every token the model processes, prompt included) and peak RSS.

    python benchmarks/bench_trainer.py [--small] [--model crafter-small] [--threads 1]

Data: scripted Crafter turns with the real system prompt and one history turn (the shape
of exported SFT data). Throughput is measured from TRL's token count over wall time,
after the first logged step (warm-up). Goal (issue 5): >= 8k tokens/s for crafter-small on
1 thread of an idle machine, peak RSS <= 2 GB.

Arithmetic to read the result by: training costs ~6 x parameters FLOP per token plus
attention (~12 x length x hidden x layers). crafter-small (10.9M, 8x320, ~800-token rows)
is ~90 MFLOP/token, so 8k tokens/s would need ~700 GFLOP/s; one AVX2 core of this machine
does ~20-50 GFLOP/s in practice. The goal is only reachable for ~1M-parameter models on
short rows, or on a GPU (``--model Qwen/Qwen2.5-0.5B-Instruct --threads 8`` there, LoRA).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from crafter_tui.finetune.trainer import TrainEvent, TrainJob, run_training
from crafter_tui.finetune.trainer.sample_data import scripted_conversations, write_jsonl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--model", default="crafter-small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--observation", choices=["full", "compact", "brief"], default="full",
                        help="row shape: full (~800 tokens with one history turn) or the demo's brief")
    parser.add_argument("--history-turns", type=int, default=1)
    args = parser.parse_args()
    rows = args.rows or (24 if args.small else 400)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(scripted_conversations(rows, seed=0, history_turns=args.history_turns,
                                                     observation=args.observation), Path(tmp) / "train.jsonl")
        job = TrainJob(model=args.model, training_file=data, output_dir=Path(tmp) / "out", n_epochs=1,
                       batch_size=args.batch_size, threads=args.threads, max_length=1024, logging_steps=1,
                       save_steps=10_000, seed=0)
        points: list[tuple[float, dict]] = []

        def emit(event: TrainEvent) -> None:
            if event.type == "metrics" and "train_loss" in (event.data or {}):
                points.append((time.perf_counter(), event.data))

        started = time.perf_counter()
        result = run_training(job, emit)
        wall = time.perf_counter() - started
    # tokens/s over the steps after the first (the first includes warm-up)
    speeds = [p[1]["tokens_per_second"] for p in points[1:] if p[1].get("tokens_per_second")]
    tokens_per_second = sorted(speeds)[len(speeds) // 2] if speeds else 0.0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    goal = ">= 8000 (the small built-in model, 1 thread, idle machine)"
    for line in (
        {"metric": f"trainer_tokens_per_second_{args.model}", "value": round(tokens_per_second, 1),
         "unit": "tokens/s", "goal": goal, "threads": args.threads, "batch_size": args.batch_size,
         "steps": len(points), "parameters": result.parameters, "observation": args.observation,
         "history_turns": args.history_turns},
        {"metric": "trainer_tokens_per_row", "value": round(result.trained_tokens / max(1, result.train_rows), 1),
         "unit": "tokens", "goal": "informational"},
        {"metric": "trainer_wall_seconds", "value": round(wall, 1), "unit": "s", "goal": "informational"},
        {"metric": "trainer_peak_rss", "value": round(peak_rss_mb, 1), "unit": "MB", "goal": "<= 2048"},
    ):
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
