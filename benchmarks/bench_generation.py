"""Latency of one Crafter action from a built-in model: p50 / p95 of one chat call, in process or over HTTP.

    python benchmarks/bench_generation.py [--small] [--model crafter-tiny] [--threads 1]
                                          [--prompt brief|compact|full] [--http]
    python benchmarks/bench_generation.py --constrained [--model-dir DIR] [--prompt full]
    python benchmarks/bench_generation.py --shape qwen2.5-0.5b --data rows.jsonl --new-tokens 20 \
                                          --verify 4          # on a GPU host

A fresh model of the built-in size is saved and loaded like a trained one (weights do not
change the cost). Untrained weights never emit end-of-turn, so each call generates exactly
``max_tokens`` tokens, set to the token length of the scripted expert's real reply for that
turn: the same prefill and the same number of decode steps a trained model would run.
Consecutive turns of episodes are played in order, as the agent does, so the prompt cache
(shared system-prompt prefix) is exercised; the first, uncached call is reported apart.

Prompt shapes (``--prompt``):
  brief    what the demo pipeline trains and serves: brief observation and system prompt,
           no history, replies without reasoning;
  compact  the compact observation and system prompt, no history, replies without reasoning
           (~200-token prompts, ~8-token replies);
  full     the full observation and system prompt, one history turn, replies with reasoning
           (~850-token prompts, ~11-token replies).
``--http`` sends the same calls through ``crafter-tui serve``'s app (uvicorn on loopback) with
the ``openai`` client: what an agent pays per turn, service overhead included.
Goal (issue 5): p50 <= 30 ms.

``--shape`` serves random weights of a Qwen2.5 shape (``bench_trainer.QWEN_SHAPES``, saved in
bfloat16 like a merged LoRA model) through the same ``load_model`` path, on CUDA when there is
one (``--device`` forces it, ``--dtype`` overrides bfloat16); ``--data FILE`` takes the prompts
from a chat JSONL (a GPU host without Crafter); ``--new-tokens N`` makes every reply N tokens.
``--verify N`` first checks the served greedy tokens of N prompts against Hugging Face
``model.generate`` on the same device and dtype, and that a seeded sampled reply replays.

``--constrained`` (issue 25) plays the turns four times, alternately free and constrained
(``tool_choice: "required"``: the grammar of ``finetune.constrained``), and reports p50/p95 per
call of each, the ratio (goal <= 1.10), and the grammar's own time per reply token (check,
mask and advance, timed inside the matcher). ``--model-dir`` serves a trained model folder instead of
random weights (its replies end on their own: ``max_tokens`` is then the expert's reply plus
``--slack``), so both modes generate the same reply and the calls compare one for one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import peak_rss_mb, report

from bench_trainer import QWEN_SHAPES, _random_weights_folder

from crafter_tui.finetune.constrained import TokenMatcher, output_spec
from crafter_tui.finetune.inference import DEVICE_ENV_VAR, LoadedModel, load_model
from crafter_tui.finetune.trainer.data import load_chat_jsonl
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer

_MOVES = ["move_left", "move_right", "move_up", "move_down"]
#: prompt shape -> (observation format, history turns, keep reasoning)
SHAPES = {"brief": ("brief", 0, False), "compact": ("compact", 0, False), "full": ("full", 1, True)}


def scripted_rows(turns: int, seed: int, shape: str) -> list[dict[str, Any]]:
    """Chat rows (messages ending with the expert's reply, tools) from consecutive scripted turns."""
    from crafter_tui.agents import prompting  # Crafter only when rows are scripted (not --data)
    from crafter_tui.agents.base import HistoryTurn
    from crafter_tui.world.env import CrafterWorld
    from crafter_tui.world.rules import ACTIONS, SEMANTIC_NAMES
    from crafter_tui.world.text_obs import OBSERVATION_FORMATS

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


def file_rows(path: Path, turns: int) -> list[dict[str, Any]]:
    """The first ``turns`` conversations of a chat JSONL, as rows (the last message is the reply)."""
    return [{"messages": e.messages, "tools": e.tools} for e in load_chat_jsonl(path)[:turns]]


def in_process_caller(loaded: LoadedModel, constrained: bool = False) -> tuple[Callable[[dict, int], Any],
                                                                               Callable[[], None]]:
    def call(row: dict, max_tokens: int) -> Any:
        output = output_spec(row["tools"], "required", None, max_tokens) if constrained else None
        return loaded.chat(row["messages"][:-1], row["tools"], max_tokens=max_tokens, output=output)

    return call, lambda: None


class GrammarTimer:
    """Seconds spent inside ``TokenMatcher.allows``/``mask``/``advance`` (the whole cost of
    constraining a token) and how many tokens they saw: the methods are wrapped while it runs."""

    def __init__(self) -> None:
        self.seconds, self.tokens = 0.0, 0
        for name in ("mask", "allows", "advance"):
            setattr(TokenMatcher, name, self._timed(getattr(TokenMatcher, name), name == "advance"))

    def _timed(self, method: Callable[..., Any], counts: bool) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - started
                self.tokens += counts

        return wrapper


def constrained_comparison(loaded: LoadedModel, rows: list[dict[str, Any]], budgets: list[int],
                           common: dict[str, Any]) -> None:
    """Free vs constrained over the same turns (passes free, constrained, free, constrained, the
    prompt cache reset before each so every pass starts alike); p50/p95 per call of each."""
    timer = GrammarTimer()
    latencies: dict[bool, list[float]] = {False: [], True: []}
    tokens: dict[bool, list[int]] = {False: [], True: []}
    valid = 0
    for constrained in (False, True, False, True):
        call, _ = in_process_caller(loaded, constrained)
        loaded.reset_prompt_cache()
        for index, (row, budget) in enumerate(zip(rows, budgets, strict=True)):
            started = time.perf_counter()
            result = call(row, budget)
            if index:  # the first call of a pass runs its whole prompt: left out of both
                latencies[constrained].append((time.perf_counter() - started) * 1000)
                tokens[constrained].append(result.completion_tokens)
            valid += constrained and bool(result.tool_calls)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    for q, label in ((0.5, "p50"), (0.95, "p95")):
        free, forced = pct(latencies[False], q), pct(latencies[True], q)
        report(f"generation_{label}_free", free, "ms", "informational", **common)
        report(f"generation_{label}_constrained", forced, "ms", "informational")
        report(f"generation_{label}_constrained_over_free", forced / free, "ratio", "<= 1.10")
    report("generation_reply_tokens_mean_free", sum(tokens[False]) / len(tokens[False]), "tokens", "informational")
    report("generation_reply_tokens_mean_constrained", sum(tokens[True]) / len(tokens[True]), "tokens",
           "informational")
    report("generation_constrained_valid_calls", valid / (2 * len(rows)), "fraction", "1.0 when replies end")
    report("constraint_ms_per_token", 1000 * timer.seconds / max(1, timer.tokens), "ms", "informational",
           tokens=timer.tokens)


def verify(loaded: LoadedModel, rows: list[dict[str, Any]], new_tokens: int) -> None:
    """Served greedy tokens == ``model.generate``'s on the same device and dtype, prompt by prompt
    (consecutive prompts, so the prompt cache is used); a seeded sampled reply replays."""
    model, stop = loaded.model, sorted(loaded.stop_ids)
    equal, divergences = 0, []
    for row in rows:
        ids = loaded.prompt_ids(row["messages"][:-1], row["tools"], new_tokens)
        served, _, _ = loaded.generate_ids(ids, new_tokens)
        with torch.inference_mode():
            prompt = torch.tensor([ids], device=loaded.device)
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                 do_sample=False, eos_token_id=stop, pad_token_id=model.config.pad_token_id)
        reference = [t for t in out[0, len(ids):].tolist() if t not in loaded.stop_ids]
        if served == reference:
            equal += 1
            continue
        at = next((i for i, (a, b) in enumerate(zip(served, reference)) if a != b), min(len(served), len(reference)))
        with torch.inference_mode():  # how close the two candidates were where the paths parted
            logits = model(input_ids=torch.tensor([ids + reference[:at]], device=loaded.device),
                           logits_to_keep=1).logits[0, -1].float()
        top = torch.topk(logits, 2).values.tolist()
        divergences.append({"token": at, "reference_top2_gap": round(top[0] - top[1], 5)})
    report("generation_greedy_equals_hf_generate", equal / len(rows), "fraction of prompts", "1.0",
           prompts=len(rows), new_tokens=new_tokens, dtype=str(model.dtype), divergences=divergences)
    ids = loaded.prompt_ids(rows[0]["messages"][:-1], rows[0]["tools"], new_tokens)
    first = loaded.generate_ids(ids, new_tokens, temperature=1.0, seed=11)[0]
    again = loaded.generate_ids(ids, new_tokens, temperature=1.0, seed=11)[0]
    report("generation_seeded_sampling_replays", float(first == again), "bool", "1.0", tokens=len(first))


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


def _model_folder(args: argparse.Namespace, rows: list[dict[str, Any]], tmp: Path) -> Path:
    """A saved model folder: ``--model-dir``, random weights of ``--shape`` or a fresh built-in model."""
    if args.model_dir:
        return args.model_dir
    if args.shape:
        data = args.data or tmp / "rows.jsonl"
        if not args.data:
            data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return _random_weights_folder(args.shape, data, tmp)
    corpus = scripted_rows(300, seed=1, shape=args.prompt) if not args.data else file_rows(args.data, 2000)
    tokenizer = train_tokenizer([t for r in corpus for t in message_texts(r["messages"])],
                                BUILTIN_SIZES[args.model].vocab_size)
    folder = tmp / "m"
    build_model(BUILTIN_SIZES[args.model], tokenizer, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--model", default="crafter-tiny", choices=sorted(BUILTIN_SIZES))
    parser.add_argument("--shape", choices=sorted(QWEN_SHAPES), help="random weights of this Qwen2.5 shape")
    parser.add_argument("--data", type=Path, help="prompts from this chat JSONL instead of scripted turns")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--prompt", default="compact", choices=sorted(SHAPES))
    parser.add_argument("--new-tokens", type=int, default=None, help="every reply this many tokens")
    parser.add_argument("--device", default=None, help=f"auto, cpu, cuda, cuda:N (default ${DEVICE_ENV_VAR} or auto)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="override the serving dtype")
    parser.add_argument("--verify", type=int, default=0, metavar="N", help="check N prompts against model.generate")
    parser.add_argument("--http", action="store_true", help="through the service's /v1/chat/completions")
    parser.add_argument("--constrained", action="store_true", help="free vs tool_choice required, same turns")
    parser.add_argument("--model-dir", type=Path, help="a trained model folder instead of random weights")
    parser.add_argument("--slack", type=int, default=16, help="with --model-dir: max_tokens = reply + slack")
    return parser.parse_args()


def main() -> int:
    args = _parse()
    turns = args.turns or (40 if args.small else 150)
    torch.set_num_threads(args.threads)
    if args.device:
        os.environ[DEVICE_ENV_VAR] = args.device  # the service (--http) reads it too
    rows = file_rows(args.data, turns) if args.data else scripted_rows(turns, seed=2, shape=args.prompt)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = _model_folder(args, rows, Path(tmp))
        loaded = load_model(folder, threads=args.threads, dtype=dtype)
        slack = args.slack if args.model_dir else 0
        budgets = [args.new_tokens or reply_tokens(loaded.tokenizer, row) + slack for row in rows]
        device = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else "cpu"
        if args.constrained:
            name = args.model_dir.name if args.model_dir else args.shape or args.model
            constrained_comparison(loaded, rows, budgets, {"model": name, "prompt": args.prompt, "device": device,
                                                           "threads": args.threads, "turns": len(rows) - 1})
            return 0
        if args.verify:
            verify(loaded, rows[: args.verify], args.new_tokens or 20)
            loaded.reset_prompt_cache()  # the first timed call runs uncached, as without --verify
        if args.http:
            del loaded
            call, stop = http_caller(folder, args.threads, Path(tmp) / "svc")
        else:
            call, stop = in_process_caller(loaded)
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
    name, prompt = args.shape or args.model, args.data.stem if args.data else args.prompt
    common = {"model": name, "prompt": prompt, "threads": args.threads, "turns": len(steady), "device": device,
              "new_tokens": args.new_tokens}
    report(f"generation_p50_{where}_{name}_{prompt}", pct(0.5), "ms", "<= 30", **common)
    report(f"generation_p95_{where}_{name}_{prompt}", pct(0.95), "ms", "informational")
    report("generation_first_call_uncached", first, "ms", "informational")
    report("generation_tokens_per_second", sum(replies[1:]) / (sum(latencies[1:]) / 1000), "tokens/s",
           "informational (reply tokens over the whole call, prefill included)")
    report("generation_prompt_tokens_mean", sum(prompt_tokens) / len(rows), "tokens", "informational")
    report("generation_reply_tokens_mean", sum(replies) / len(rows), "tokens", "informational")
    report("generation_peak_rss", peak_rss_mb(), "MB", "informational")
    if torch.cuda.is_available():
        report("generation_peak_gpu_memory", torch.cuda.max_memory_allocated() / 2**30, "GiB", "informational")
    return 0


if __name__ == "__main__":
    sys.exit(main())
