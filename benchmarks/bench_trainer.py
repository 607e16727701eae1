"""Trainer throughput: tokens/s (every token the model processes, prompt included) and peak memory.

    python benchmarks/bench_trainer.py [--small] [--model crafter-tiny] [--threads 1]
    python benchmarks/bench_trainer.py --shape qwen2.5-0.5b --data train.jsonl   # on a GPU host

Data: scripted Crafter turns with the real system prompt (the shape of exported SFT data),
or ``--data FILE`` (an exported JSONL; lets a GPU host without Crafter installed run it).
Throughput is the median of the logged steps after the first (warm-up). Goal (issue 5):
>= 8k tokens/s for the small built-in model on 1 thread of an idle machine, peak RSS <= 2 GB.

``--shape`` trains the real pretrained-weights path (bf16, LoRA on all linear layers,
activation checkpointing, TRL's SFTTrainer) on a model with Qwen2.5's exact dimensions and
vocabulary but random weights, saved to a folder and loaded like downloaded weights:
throughput depends on the shapes, not the values, and the GPU hosts we measure on cannot
download. With real weights, pass ``--model PATH`` instead.

Arithmetic to read a CPU result by: training costs ~6 x parameters FLOP per token plus
attention (~12 x length x hidden x layers); one AVX2 core of this machine does ~20-60 GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from crafter_tui.finetune.trainer import TrainEvent, TrainJob, run_training

#: Qwen2.5 dimensions (from the models' published config.json files).
QWEN_SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2.5-7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}


def _training_file(args: argparse.Namespace, folder: Path) -> Path:
    if args.data:
        return args.data
    from crafter_tui.finetune.trainer.sample_data import scripted_conversations, write_jsonl

    rows = args.rows or (24 if args.small else 400)
    return write_jsonl(scripted_conversations(rows, seed=0, history_turns=args.history_turns,
                                              observation=args.observation), folder / "train.jsonl")


def _random_weights_folder(shape: str, data: Path, folder: Path) -> Path:
    """A model folder with ``shape``'s dimensions, random bf16 weights and a tokenizer fit on ``data``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from crafter_tui.finetune.trainer.data import load_chat_jsonl
    from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer

    texts = [text for example in load_chat_jsonl(data)[:2000] for text in message_texts(example.messages)]
    tokenizer = train_tokenizer(texts, 16384)
    config = Qwen2Config(**QWEN_SHAPES[shape], max_position_embeddings=32768, use_sliding_window=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    path = folder / shape
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return path


def _tokens_per_cpu_second(points: list[dict], clocks: list[tuple[float, float]]) -> float:
    """Tokens over CPU seconds after the first logged step: with one thread, what an idle
    machine's wall clock would show, while other processes' load mostly drops out."""
    tokens = cpu = 0.0
    for i in range(2, len(points)):
        (wall_before, cpu_before), (wall_now, cpu_now) = clocks[i - 1], clocks[i]
        tokens += (points[i].get("tokens_per_second") or 0.0) * (wall_now - wall_before)
        cpu += cpu_now - cpu_before
    return tokens / cpu if cpu > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--model", default="crafter-tiny", help="a built-in size or a folder of weights")
    parser.add_argument("--shape", choices=sorted(QWEN_SHAPES), help="random weights of this Qwen2.5 shape (LoRA)")
    parser.add_argument("--data", type=Path, help="train on this chat JSONL instead of scripted turns")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--observation", choices=["full", "compact", "brief"], default="brief",
                        help="row shape: the demo's brief, or full (~800 tokens with one history turn)")
    parser.add_argument("--history-turns", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = _training_file(args, Path(tmp))
        model = str(_random_weights_folder(args.shape, data, Path(tmp))) if args.shape else args.model
        job = TrainJob(model=model, training_file=data, output_dir=Path(tmp) / "out", n_epochs=1,
                       batch_size=args.batch_size, threads=args.threads, max_length=1024, logging_steps=1,
                       save_steps=10_000, seed=0)
        points: list[dict] = []
        clocks: list[tuple[float, float]] = []  # (wall, process CPU) at each metrics event

        def emit(event: TrainEvent) -> None:
            if event.type == "metrics" and "train_loss" in (event.data or {}):
                points.append(event.data)
                clocks.append((time.perf_counter(), time.process_time()))

        started = time.perf_counter()
        result = run_training(job, emit)
        wall = time.perf_counter() - started
    speeds = sorted(p["tokens_per_second"] for p in points[1:] if p.get("tokens_per_second"))
    tokens_per_second = speeds[len(speeds) // 2] if speeds else 0.0
    cpu_speed = _tokens_per_cpu_second(points, clocks)
    name = args.shape or args.model
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {args.threads} thread(s)"
    lines = [
        {"metric": f"trainer_tokens_per_second_{name}", "value": round(tokens_per_second, 1), "unit": "tokens/s",
         "goal": ">= 8000 (the small built-in model, 1 thread, idle machine)" if not args.shape else "informational",
         "device": device, "batch_size": args.batch_size, "steps": len(points), "parameters": result.parameters,
         "trainable_parameters": result.trainable_parameters,
         "data": str(args.data) if args.data else f"{args.observation} observation, {args.history_turns} history turn(s)"},
        {"metric": f"trainer_tokens_per_cpu_second_{name}", "value": round(cpu_speed, 1), "unit": "tokens/s",
         "goal": "informational: the same tokens over this process's CPU time, steadier on a shared machine"},
        {"metric": "trainer_tokens_per_row", "value": round(result.trained_tokens / max(1, result.train_rows), 1),
         "unit": "tokens", "goal": "informational"},
        {"metric": "trainer_loss_first_last", "value": [round(points[0]["train_loss"], 3),
                                                        round(points[-1]["train_loss"], 3)] if points else None,
         "unit": "loss", "goal": "falls"},
        {"metric": "trainer_wall_seconds", "value": round(wall, 1), "unit": "s", "goal": "informational"},
        {"metric": "trainer_peak_rss", "value": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
         "unit": "MB", "goal": "<= 2048" if not args.shape else "informational"},
    ]
    if torch.cuda.is_available():
        lines.append({"metric": "trainer_peak_gpu_memory", "unit": "GiB", "goal": "informational",
                      "value": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
