"""Latency of one Crafter action through the fine-tune service's ``/v1/chat/completions`` (HTTP + engine).

    python benchmarks/bench_ft_service.py [--small] [--model crafter-small] [--threads 1]

What an agent pays per turn when it plays a served model: the real ``openai`` client, uvicorn on
loopback, the service's model cache and tool-call parsing, and the inference engine. A fresh
built-in model is saved and dropped into the service's ``models/`` folder (an imported model,
served by name); untrained weights never stop early, so ``max_tokens`` is set to the length of
the scripted expert's real reply for each turn, like ``bench_generation.py`` does. The
difference between this p50 and ``bench_generation``'s is the service overhead.
Goal (issue 5): generation p50 <= 30 ms for the small model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import peak_rss_mb, report

from crafter_tui.finetune.trainer.data import parse_example
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.sample_data import scripted_conversations
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer
from crafter_tui.servers.ft_jobs import SERVED_NAME_FILE
from crafter_tui.servers.ft_server import ServeSettings, create_app
from tests.ft_support import ServerThread


def _reply_tokens(tokenizer, row: dict) -> int:  # noqa: ANN001
    example = parse_example(row, "bench")
    prompt = tokenizer.apply_chat_template(example.messages[:-1], tools=row["tools"], add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(example.messages, tools=row["tools"], return_dict=True)["input_ids"]
    return len(full) - len(prompt) - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--model", default="crafter-small")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    turns = 20 if args.small else 100
    corpus = scripted_conversations(200 if args.small else 400, seed=1, history_turns=1)
    rows = scripted_conversations(turns, seed=2, history_turns=1)
    tokenizer = train_tokenizer([t for r in corpus for t in message_texts(r["messages"])],
                                BUILTIN_SIZES[args.model].vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "svc" / "models" / "bench"
        build_model(BUILTIN_SIZES[args.model], tokenizer, seed=0).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        name = f"ft:{args.model}:bench:imported"
        (folder / SERVED_NAME_FILE).write_text(name)
        server = ServerThread(create_app(ServeSettings(data_dir=Path(tmp) / "svc", threads=args.threads))).start()
        try:
            import openai

            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
            latencies = []
            for row in rows:
                started = time.perf_counter()
                client.chat.completions.create(model=name, messages=row["messages"][:-1], tools=row["tools"],
                                               max_tokens=_reply_tokens(tokenizer, row), temperature=0)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            server.stop()
    first, steady = latencies[0], sorted(latencies[1:])

    def pct(q: float) -> float:
        return steady[min(len(steady) - 1, int(q * len(steady)))]

    report(f"served_generation_p50_{args.model}", pct(0.5), "ms", "<= 30 (generation), service overhead small")
    report(f"served_generation_p90_{args.model}", pct(0.9), "ms", "informational")
    report("served_first_call_including_model_load", first, "ms", "informational")
    report("ft_service_peak_rss", peak_rss_mb(), "MB", "informational")
    return 0


if __name__ == "__main__":
    sys.exit(main())
