"""Latency of one Crafter action from a built-in model: p50 / p90 of ``LoadedModel.chat``.

    python benchmarks/bench_generation.py [--small] [--model crafter-small] [--threads 1]

A fresh model of the built-in size is saved and loaded like a trained one (weights do not
change the cost). Untrained weights never emit end-of-turn, so each call generates exactly
``max_tokens`` tokens, set to the token length of the scripted expert's real reply for that
turn: the same prefill and the same number of decode steps a trained model would run.
Consecutive turns of one episode are played in order, as the agent does, so the prompt
cache (shared system-prompt prefix) is exercised; the first, uncached call is reported too.
Goal (issue 5): p50 <= 30 ms.
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

from crafter_tui.finetune.inference import load_model
from crafter_tui.finetune.trainer.data import parse_example
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.sample_data import scripted_conversations
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer


def _reply_tokens(tokenizer, row: dict) -> int:
    example = parse_example(row, "bench")
    prompt = tokenizer.apply_chat_template(example.messages[:-1], tools=row["tools"], add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(example.messages, tools=row["tools"], return_dict=True)["input_ids"]
    return len(full) - len(prompt) - 1  # without the trailing newline: the stop token ends the reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--model", default="crafter-small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=None)
    args = parser.parse_args()
    turns = args.turns or (30 if args.small else 100)
    torch.set_num_threads(args.threads)
    corpus = scripted_conversations(400, seed=1, history_turns=1)
    rows = scripted_conversations(turns, seed=2, history_turns=1)
    tokenizer = train_tokenizer([t for r in corpus for t in message_texts(r["messages"])],
                                BUILTIN_SIZES[args.model].vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(BUILTIN_SIZES[args.model], tokenizer, seed=0)
        model.save_pretrained(Path(tmp) / "m")
        tokenizer.save_pretrained(Path(tmp) / "m")
        loaded = load_model(Path(tmp) / "m", threads=args.threads)
    latencies, reply_lengths, prompt_lengths, cached = [], [], [], []
    for row in rows:
        reply_tokens = _reply_tokens(tokenizer, row)
        started = time.perf_counter()
        result = loaded.chat(row["messages"][:-1], row["tools"], max_tokens=reply_tokens)
        latencies.append((time.perf_counter() - started) * 1000)
        reply_lengths.append(result.completion_tokens)
        prompt_lengths.append(result.prompt_tokens)
        cached.append(result.cached_prompt_tokens)
    first, steady = latencies[0], sorted(latencies[1:])

    def pct(q: float) -> float:
        return round(steady[min(len(steady) - 1, int(q * len(steady)))], 2)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in (
        {"metric": f"generation_p50_{args.model}", "value": pct(0.5), "unit": "ms", "goal": "<= 30",
         "threads": args.threads, "turns": len(steady)},
        {"metric": f"generation_p90_{args.model}", "value": pct(0.9), "unit": "ms", "goal": "informational"},
        {"metric": "generation_first_call_uncached", "value": round(first, 2), "unit": "ms", "goal": "informational"},
        {"metric": "generation_prompt_tokens_mean", "value": round(sum(prompt_lengths) / len(rows), 1),
         "unit": "tokens", "goal": "informational", "cached_mean": round(sum(cached) / len(rows), 1)},
        {"metric": "generation_reply_tokens_mean", "value": round(sum(reply_lengths) / len(rows), 1),
         "unit": "tokens", "goal": "informational"},
        {"metric": "generation_peak_rss", "value": round(peak_rss_mb, 1), "unit": "MB", "goal": "informational"},
    ):
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
