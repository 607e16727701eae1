"""Build a synthetic trace store in the real file format (run.json, turns/steps/episodes JSONL).

Default: 100 runs x 1,000 episodes = 100k episodes, ~10 turns and ~30 steps each (~1M turns,
~3M steps). Lines are written with string formatting (only the texts go through
``json.dumps``), runs are spread over worker processes. ``--small`` builds 2k episodes.

    python benchmarks/gen_synthetic_store.py --out /tmp/store [--small] [--episodes N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, interact_message, stable_hash, tool_result_text
from crafter_tui.traces.schema import RunRecord, Versions
from crafter_tui.world.rules import ACHIEVEMENTS, ACTION_IDS

# a plausible unlock order (easy first) so achievement counts look like real runs
ORDER = ["collect_wood", "place_table", "collect_sapling", "wake_up", "collect_drink", "place_plant",
         "make_wood_pickaxe", "make_wood_sword", "eat_cow", "defeat_zombie", "collect_stone", "place_stone",
         "eat_plant", "make_stone_pickaxe", "make_stone_sword", "collect_coal", "place_furnace",
         "defeat_skeleton", "collect_iron", "make_iron_pickaxe", "make_iron_sword", "collect_diamond"]
TERMINATIONS = ["death"] * 6 + ["max_steps"] * 3 + ["agent_terminated", "timeout"]
SYMBOLS = ". . T : # ~ c".split()
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()
MOVES = ["move_left", "move_right", "move_up", "move_down", "do", "noop", "sleep", "place_table"]


def local_maps(rng: random.Random, count: int = 256) -> list[str]:
    """A pool of 9x7 map texts (drawing 63 symbols per turn would dominate the generator)."""
    maps = []
    for _ in range(count):
        rows = [" ".join(rng.choice(SYMBOLS) for _ in range(9)) for _ in range(7)]
        rows[3] = rows[3][:8] + "@" + rows[3][9:]
        maps.append("\n".join(rows))
    return maps


def observation(rng: random.Random, maps: list[str], step: int, turn: int, unlocked: int) -> str:
    return (f"Step {step}/300, turn {turn}, day.\nMap (north is up; @ is you):\n" + maps[rng.randrange(len(maps))]
            + "\nLegend: @ you, . grass, : sand, T tree, # stone, ~ water, c coal\n"
            f"You see: tree {rng.randint(1, 4)} north; water {rng.randint(1, 6)} east.\nYou face grass (south).\n"
            f"Status: health {rng.randint(1, 9)}/9, food {rng.randint(1, 9)}/9, drink {rng.randint(1, 9)}/9, "
            f"energy {rng.randint(1, 9)}/9.\nInventory: wood {rng.randint(0, 9)}.\n"
            f"Achievements ({unlocked}/22).")


def write_run(args: tuple[Path, str, int, int, int]) -> tuple[int, int, int]:
    root, run_id, episodes, seed, history_turns = args
    rng = random.Random(seed)
    maps = local_maps(rng)
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(run_id=run_id, created_at=datetime.now(timezone.utc), agent="scripted",
                       model=rng.choice(["scripted-expert", "gpt-4o-mini", "qwen-7b"]), status="finished",
                       system_prompt=SYSTEM_PROMPT, prompt_hash=stable_hash(SYSTEM_PROMPT),
                       tools_hash=stable_hash(TOOLS), history_turns=history_turns, episodes=episodes,
                       episodes_finished=episodes, versions=Versions(crafter="1.8.3", crafter_tui="0.1.0",
                                                                     python="3.11"))
    (run_dir / "run.json").write_text(record.model_dump_json(indent=2))
    n_turns = n_steps = 0
    with (run_dir / "turns.jsonl").open("w") as turns, (run_dir / "steps.jsonl").open("w") as steps, \
            (run_dir / "episodes.jsonl").open("w") as summaries:
        for episode in range(episodes):
            ep_seed = seed * 10_000 + episode
            goal = min(len(ORDER), int(rng.expovariate(1 / 4.0)))
            turns_here = rng.randint(5, 15)
            unlock_turns = sorted(rng.sample(range(turns_here), min(goal, turns_here)))
            unlocked: list[str] = []
            step = 0
            reward = 0.0
            for turn in range(turns_here):
                acts = [rng.choice(MOVES) for _ in range(rng.randint(1, 5))]
                new = [ORDER[len(unlocked)]] if turn in unlock_turns else []
                obs = observation(rng, maps, step, turn, len(unlocked))
                assistant = interact_message(acts, f"heading for {rng.choice(MOVES)}", f"call_{episode}_{turn}")
                result = tool_result_text(acts, new, False)
                turns.write(
                    f'{{"episode":{episode},"seed":{ep_seed},"attempt":0,"turn":{turn},"step":{step},'
                    f'"observation":{json.dumps(obs)},"assistant":{json.dumps(assistant)},'
                    f'"tool_result":{json.dumps(result)},"actions":{json.dumps(acts)},"reasoning":"",'
                    f'"valid":true,"error":null,"raw":null,"terminate":false,"reward":{float(len(new))},'
                    f'"new_achievements":{json.dumps(new)},"prompt_tokens":0,"completion_tokens":0,'
                    f'"latency_ms":0.0}}\n')
                for k, action in enumerate(acts):
                    step += 1
                    gained = new if k == 0 else []
                    steps.write(
                        f'{{"episode":{episode},"seed":{ep_seed},"attempt":0,"step":{step},"turn":{turn},'
                        f'"action":{ACTION_IDS[action]},"action_name":"{action}","reward":{float(len(gained))},'
                        f'"done":false,"pos":[32,32],"facing":[0,1],"sleeping":false,"daylight":1.0,'
                        f'"inventory":[9,9,9,9,0,0,0,0,0,0,0,0,0,0,0,0],"view":"{"." * 63}",'
                        f'"new_achievements":{json.dumps(gained)}}}\n')
                unlocked.extend(new)
                reward += len(new)
            n_turns += turns_here
            n_steps += step
            names = [a for a in ACHIEVEMENTS if a in unlocked]
            summaries.write(
                f'{{"episode":{episode},"seed":{ep_seed},"attempt":0,"run_id":"{run_id}","agent":"scripted",'
                f'"model":"{record.model}","difficulty":"normal","steps":{step},"turns":{turns_here},'
                f'"reward":{reward},"achievements":{json.dumps(names)},"num_achievements":{len(names)},'
                f'"termination":"{rng.choice(TERMINATIONS)}","error":null,"invalid_actions":0,'
                f'"prompt_tokens":0,"completion_tokens":0,"started_at":"{NOW}","finished_at":"{NOW}",'
                f'"wall_s":1.0}}\n')
    return episodes, n_turns, n_steps


def generate(root: Path, episodes: int, *, per_run: int = 1000, workers: int = 2,
             history_turns: int = 2) -> dict[str, float]:
    """Write ``episodes`` episodes under ``root``; returns counts and timing."""
    started = time.perf_counter()
    jobs = []
    for index, start in enumerate(range(0, episodes, per_run)):
        jobs.append((root, f"run-{index:04d}", min(per_run, episodes - start), index + 1, history_turns))
    with multiprocessing.Pool(workers) as pool:
        results = pool.map(write_run, jobs)
    size = sum(p.stat().st_size for p in root.rglob("*.jsonl"))
    return {"episodes": sum(r[0] for r in results), "turns": sum(r[1] for r in results),
            "steps": sum(r[2] for r in results), "bytes": size, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: a new temp dir)")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    episodes = args.episodes or (2_000 if args.small else 100_000)
    root = args.out or Path(tempfile.mkdtemp(prefix="crafter_store_"))
    root.mkdir(parents=True, exist_ok=True)
    info = generate(root, episodes, workers=args.workers)
    for key in ("episodes", "turns", "steps", "bytes"):
        print(json.dumps({"metric": f"synthetic_{key}", "value": info[key], "unit": "count" if key != "bytes" else "B",
                          "goal": None}))
    print(json.dumps({"metric": "generate_seconds", "value": round(info["seconds"], 2), "unit": "s", "goal": None}))
    print(json.dumps({"metric": "store_path", "value": str(root), "unit": "path", "goal": None}), file=sys.stderr)


if __name__ == "__main__":
    main()
