"""Latency of one Crafter action from a built-in model: p50 / p95 of one chat call, in process or over HTTP.

    python benchmarks/bench_generation.py [--small] [--model crafter-tiny] [--threads 1]
                                          [--prompt compact|full] [--http]

A fresh model of the built-in size is saved and loaded like a trained one (weights do not
change the cost). Untrained weights never emit end-of-turn, so each call generates exactly
``max_tokens`` tokens, set to the token length of the scripted expert's real reply for that
turn: the same prefill and the same number of decode steps a trained model would run.
Consecutive turns of episodes are played in order, as the agent does, so the prompt cache
(shared system-prompt prefix) is exercised; the first, uncached call is reported apart.

Two prompt shapes (``--prompt``):
  compact  what the demo pipeline trains and serves: compact observation and system prompt,
           no history, replies without reasoning (~200-token prompts, ~8-token replies);
  full     the full observation and system prompt, one history turn, replies with reasoning
           (~850-token prompts, ~11-token replies).
``--http`` sends the same calls through ``crafter-tui serve``'s app (uvicorn on loopback) with
the ``openai`` client: what an agent pays per turn, service overhead included.
Goal (issue 5): p50 <= 30 ms.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import peak_rss_mb, report

from crafter_tui.agents import prompting
from crafter_tui.agents.base import HistoryTurn
from crafter_tui.finetune.inference import load_model
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS, SEMANTIC_NAMES
from crafter_tui.world.text_obs import OBSERVATION_FORMATS

_MOVES = ["move_left", "move_right", "move_up", "move_down"]
#: prompt shape -> (observation format, history turns, keep reasoning)
SHAPES = {"compact": ("compact", 0, False), "full": ("full", 1, True)}


def scripted_rows(turns: int, seed: int, shape: str) -> list[dict[str, Any]]:
    """Chat rows (messages ending with the expert's reply, tools) from consecutive scripted turns."""
    observation_format, history_turns, reasoning = SHAPES[shape]
    render = OBSERVATION_FORMATS[observation_format]
    system = prompting.SYSTEM_PROMPTS[observation_format]
    rng, rows, episode = random.Random(seed), [], 0
    while len(rows) < turns:
        world = CrafterWorld("normal", max_steps=200)
        state, history = world.reset(seed + episode), []
        for turn in range(200):
            if len(rows) >= turns:
                break
            observation = render(state, turn=turn, max_steps=200)
            if SEMANTIC_NAMES[state.facing_id] == "tree":
                actions, why = ["do"], "facing a tree, collect wood"
            else:
                move = rng.choice(_MOVES)
                actions, why = [move, move], "exploring for trees"
            messages = prompting.build_messages(system, history, observation, history_turns)
            reply = prompting.interact_message(actions, why if reasoning else "", f"call_{episode}_{turn}")
            rows.append({"messages": [*messages, reply], "tools": prompting.TOOLS})
            done = False
            for action in actions:
                outcome = world.step(ACTIONS.index(action))
                state, done = outcome.state, outcome.done
                if done:
                    break
            history.append(HistoryTurn(observation, reply, prompting.tool_result_text(actions, [], done)))
            if done:
                break
        episode += 1
    return rows


def reply_tokens(tokenizer: Any, row: dict[str, Any]) -> int:
    """Tokens of the row's reply (without the end-of-turn token that stops generation)."""
    messages, tools = row["messages"], row["tools"]
    prompt = tokenizer.apply_chat_template(messages[:-1], tools=tools, add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(messages, tools=tools, return_dict=True)["input_ids"]
    return len(full) - len(prompt) - 1


def in_process_caller(folder: Path, threads: int) -> tuple[Callable[[dict, int], Any], Callable[[], None]]:
    loaded = load_model(folder, threads=threads)

    def call(row: dict, max_tokens: int) -> Any:
        return loaded.chat(row["messages"][:-1], row["tools"], max_tokens=max_tokens)

    return call, lambda: None


def http_caller(folder: Path, threads: int, data_dir: Path) -> tuple[Callable[[dict, int], Any], Callable[[], None]]:
    import openai

    from crafter_tui.servers.ft_jobs import SERVED_NAME_FILE
    from crafter_tui.servers.ft_server import ServeSettings, create_app
    from tests.ft_support import ServerThread

    served = data_dir / "models" / "bench"
    served.parent.mkdir(parents=True)
    folder.rename(served)
    name = "ft:bench:imported"
    (served / SERVED_NAME_FILE).write_text(name)
    server = ServerThread(create_app(ServeSettings(data_dir=data_dir, threads=threads))).start()
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)

    def call(row: dict, max_tokens: int) -> Any:
        return client.chat.completions.create(model=name, messages=row["messages"][:-1], tools=row["tools"],
                                              max_tokens=max_tokens, temperature=0)

    return call, server.stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--model", default="crafter-tiny", choices=sorted(BUILTIN_SIZES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--prompt", default="compact", choices=sorted(SHAPES))
    parser.add_argument("--http", action="store_true", help="through the service's /v1/chat/completions")
    args = parser.parse_args()
    turns = args.turns or (40 if args.small else 150)
    torch.set_num_threads(args.threads)
    corpus = scripted_rows(300, seed=1, shape=args.prompt)
    rows = scripted_rows(turns, seed=2, shape=args.prompt)
    tokenizer = train_tokenizer([t for r in corpus for t in message_texts(r["messages"])],
                                BUILTIN_SIZES[args.model].vocab_size)
    budgets = [reply_tokens(tokenizer, row) for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        build_model(BUILTIN_SIZES[args.model], tokenizer, seed=0).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        call, stop = (http_caller(folder, args.threads, Path(tmp) / "svc") if args.http
                      else in_process_caller(folder, args.threads))
        latencies, prompt_tokens, replies = [], [], []
        try:
            for row, budget in zip(rows, budgets, strict=True):
                started = time.perf_counter()
                result = call(row, budget)
                latencies.append((time.perf_counter() - started) * 1000)
                usage = getattr(result, "usage", None) or result
                prompt_tokens.append(usage.prompt_tokens)
                replies.append(usage.completion_tokens)
        finally:
            stop()
    first, steady = latencies[0], sorted(latencies[1:])

    def pct(q: float) -> float:
        return steady[min(len(steady) - 1, int(q * len(steady)))]

    where = "served" if args.http else "in_process"
    common = {"model": args.model, "prompt": args.prompt, "threads": args.threads, "turns": len(steady)}
    report(f"generation_p50_{where}_{args.model}_{args.prompt}", pct(0.5), "ms", "<= 30", **common)
    report(f"generation_p95_{where}_{args.model}_{args.prompt}", pct(0.95), "ms", "informational")
    report("generation_first_call_uncached", first, "ms", "informational")
    report("generation_prompt_tokens_mean", sum(prompt_tokens) / len(rows), "tokens", "informational")
    report("generation_reply_tokens_mean", sum(replies) / len(rows), "tokens", "informational")
    report("generation_peak_rss", peak_rss_mb(), "MB", "informational")
    return 0


if __name__ == "__main__":
    sys.exit(main())
