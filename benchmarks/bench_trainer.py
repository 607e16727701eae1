"""Trainer throughput: tokens/s (every token the model processes, prompt included) and peak memory.

    python benchmarks/bench_trainer.py [--small] [--model crafter-tiny] [--threads 1]
    python benchmarks/bench_trainer.py --shape qwen2.5-0.5b --data train.jsonl   # on a GPU host
    python benchmarks/bench_trainer.py --ab-shared-prefix [--reps 5]   # lean forward, prefix once vs per row

Data: scripted Crafter turns with the real system prompt (the shape of exported SFT data),
or ``--data FILE`` (an exported JSONL; lets a GPU host without Crafter installed run it).
Throughput is the median of the logged steps after the first (warm-up). Goal (issue 5):
>= 8k tokens/s for the small built-in model on 1 thread of an idle machine, peak RSS <= 2 GB.

``--shape`` trains the real pretrained-weights path (bf16, LoRA on all linear layers,
activation checkpointing, TRL's SFTTrainer) on a model with Qwen2.5's exact dimensions and
vocabulary but random weights, saved to a folder and loaded like downloaded weights:
throughput depends on the shapes, not the values, and the GPU hosts we measure on cannot
download. With real weights, pass ``--model PATH`` instead.

``--ab-shared-prefix`` times the lean forward + backward of crafter-tiny on the same batches
with and without computing the rows' shared prefix (tools line + system prompt) once per
batch, alternating in one process (A/B then B/A per batch) so other load hits both alike.

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


def _demo_batches(args: argparse.Namespace, folder: Path) -> tuple[list[dict], torch.nn.Module]:
    """Collated batches of the training rows and a crafter-tiny model, as the trainer builds them."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from crafter_tui.finetune.trainer.data import load_chat_jsonl, tokenize_examples
    from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
    from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer

    examples = load_chat_jsonl(_training_file(args, folder))
    size = BUILTIN_SIZES["crafter-tiny"]
    tokenizer = train_tokenizer([text for e in examples for text in message_texts(e.messages)], size.vocab_size)
    rows, _ = tokenize_examples(tokenizer, examples, 1024)
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [collate([{"input_ids": rows[i].input_ids, "labels": rows[i].labels}
                        for i in order[start:start + args.batch_size]])
               for start in range(0, len(order) - args.batch_size + 1, args.batch_size)]
    return batches, build_model(size, tokenizer, seed=0).train()


def _lean_step_seconds(model: torch.nn.Module, batch: dict, share_prefix: bool) -> float:
    """Wall seconds of one lean forward + cross-entropy + backward."""
    from crafter_tui.finetune.trainer.lean_forward import supervised_logits

    started = time.perf_counter()
    logits, targets = supervised_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                        share_prefix=share_prefix)
    torch.nn.functional.cross_entropy(logits.float(), targets).backward()
    elapsed = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return elapsed


def _ab_shared_prefix(args: argparse.Namespace) -> list[dict]:
    """Median step time of the lean forward per row (A) and with the shared prefix once (B)."""
    from statistics import median

    from crafter_tui.finetune.trainer.lean_forward import shared_prefix_length, token_layout

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        batches, model = _demo_batches(args, Path(tmp))
    for batch in batches[:2]:  # warm-up
        _lean_step_seconds(model, batch, False), _lean_step_seconds(model, batch, True)
    per_row, shared = [], []
    for rep in range(args.reps):
        for index, batch in enumerate(batches):
            first = (rep + index) % 2 == 0  # A/B, then B/A: neither always runs first
            for share in (False, True) if first else (True, False):
                (shared if share else per_row).append(_lean_step_seconds(model, batch, share))
    prefixes = [shared_prefix_length(b["input_ids"], token_layout(b["attention_mask"], b["labels"]))
                for b in batches]
    ratios = [a / b for a, b in zip(per_row, shared)]
    real_tokens = float(sum(batch["attention_mask"].sum() for batch in batches))
    note = f"crafter-tiny, {args.observation} rows, batch {args.batch_size}, {len(batches)} batches x {args.reps}"
    return [
        {"metric": "lean_step_ms_per_row_prefix", "value": round(median(per_row) * 1e3, 2), "unit": "ms",
         "goal": "informational", "data": note},
        {"metric": "lean_step_ms_shared_prefix", "value": round(median(shared) * 1e3, 2), "unit": "ms",
         "goal": "below per_row"},
        {"metric": "lean_step_speedup_shared_prefix", "value": round(median(ratios), 3), "unit": "x",
         "goal": "> 1 (median of per-batch A/B ratios)"},
        {"metric": "shared_prefix_tokens", "value": round(sum(prefixes) / len(prefixes), 1), "unit": "tokens",
         "goal": "informational", "tokens_per_row": round(real_tokens / (len(batches) * args.batch_size), 1)},
    ]


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
    parser.add_argument("--ab-shared-prefix", action="store_true",
                        help="time the lean forward+backward with the shared prefix once vs per row, alternating")
    parser.add_argument("--reps", type=int, default=5, help="passes over the batches for --ab-shared-prefix")
    args = parser.parse_args()
    if args.ab_shared_prefix:
        if args.small:
            args.rows, args.reps = args.rows or 48, min(args.reps, 2)
        for line in _ab_shared_prefix(args):
            print(json.dumps(line))
        return 0
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
