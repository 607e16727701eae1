"""After a job: does the model answer real Crafter turns with a valid ``interact`` call?

The observations are built the way the agent builds them (``CrafterWorld`` +
``render_text_observation`` + ``prompting.build_messages``), so a pass here means the model
can be dropped into a rollout. A reply passes when it carries an ``interact`` tool call whose
arguments are a JSON object with 1-5 known actions.
"""

from __future__ import annotations

import json
import random
import shlex
from typing import Any

from pydantic import BaseModel

from crafter_tui.agents.prompting import MAX_ACTIONS_PER_TURN, SYSTEM_PROMPT, TOOLS, build_messages
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS
from crafter_tui.world.text_obs import render_text_observation

TEST_MAX_STEPS = 300


class ObservationCheck(BaseModel):
    seed: int
    step: int
    passed: bool
    actions: list[str] = []
    detail: str = ""


class ModelTestReport(BaseModel):
    model: str
    checks: list[ObservationCheck]

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and self.passed == len(self.checks)


def crafter_turns(count: int = 3, seed: int = 0) -> list[tuple[int, int, list[dict[str, Any]]]]:
    """``count`` (seed, step, messages) turns: fresh worlds advanced a few seeded random steps."""
    turns = []
    for index in range(count):
        world_seed = seed + index
        world = CrafterWorld("normal", max_steps=TEST_MAX_STEPS)
        state = world.reset(world_seed)
        rng = random.Random(world_seed)
        for _ in range(index * 7):
            outcome = world.step(rng.randrange(len(ACTIONS)))
            state = outcome.state
            if outcome.done:
                break
        text = render_text_observation(state, turn=index * 7 + 1, max_steps=TEST_MAX_STEPS)
        turns.append((world_seed, state.step, build_messages(SYSTEM_PROMPT, [], text, 0)))
    return turns


def check_reply(tool_calls: list[dict[str, Any]], content: str | None) -> tuple[bool, list[str], str]:
    """(passed, actions, why) for one chat reply."""
    calls = [c for c in tool_calls if (c.get("function") or {}).get("name") == "interact"]
    if not calls:
        names = [(c.get("function") or {}).get("name") for c in tool_calls]
        return False, [], f"no interact call (tool calls: {names}, text: {(content or '')[:80]!r})"
    try:
        arguments = json.loads(calls[0]["function"].get("arguments") or "")
    except json.JSONDecodeError as exc:
        return False, [], f"arguments are not JSON ({exc.msg})"
    actions = arguments.get("actions") if isinstance(arguments, dict) else None
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS_PER_TURN:
        return False, [], f"'actions' must be a list of 1-{MAX_ACTIONS_PER_TURN} actions, got {actions!r}"
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        return False, [str(a) for a in actions], f"unknown actions {unknown}"
    return True, actions, "ok"


def usage_example(base_url: str, model: str, key_env: str | None) -> str:
    """How to call the model: curl and Python (the key is referenced by variable, never printed)."""
    body = json.dumps({"model": model, "messages": [
        {"role": "user", "content": "Step 0/300, turn 1, day. Map (north is up; @ is you): ..."}],
        "tools": [TOOLS[0]]})
    auth = f' \\\n  -H "Authorization: Bearer ${key_env}"' if key_env else ""
    key_expr = f'os.environ["{key_env}"]' if key_env else '"not-needed"'
    return "\n".join([
        "# curl",
        f"curl {shlex.quote(base_url.rstrip('/') + '/chat/completions')}{auth} \\",
        '  -H "Content-Type: application/json" \\',
        f"  -d {shlex.quote(body)}",
        "",
        "# Python",
        "import os",
        "from openai import OpenAI",
        "from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS",
        f"client = OpenAI(base_url={base_url!r}, api_key={key_expr})",
        f"reply = client.chat.completions.create(model={model!r}, tools=TOOLS, messages=[",
        '    {"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": observation}])',
        "print(reply.choices[0].message.tool_calls)",
        "",
        "# or play it in Crafter",
        f"crafter-tui rollout --agent openai --model {shlex.quote(model)} "
        f"--base-url {shlex.quote(base_url)} --episodes 10",
    ])
