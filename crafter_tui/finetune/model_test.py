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

from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, build_messages
from crafter_tui.agents.replies import decision_from_message, decision_from_text
from crafter_tui.dataset.card import PlayFormat
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS
from crafter_tui.world.text_obs import OBSERVATION_FORMATS

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


def crafter_turns(count: int = 3, seed: int = 0,
                  play: PlayFormat | None = None) -> list[tuple[int, int, list[dict[str, Any]]]]:
    """``count`` (seed, step, messages) turns: fresh worlds advanced a few seeded random steps, each shown
    as ``play`` (a model card's format) says, or as the ``full`` observation with its prompt."""
    observation = play.observation if play is not None else "full"
    system = play.system_prompt if play is not None else SYSTEM_PROMPT
    render = OBSERVATION_FORMATS[observation]
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
        text = render(state, turn=index * 7 + 1, max_steps=TEST_MAX_STEPS)
        turns.append((world_seed, state.step, build_messages(system, [], text, 0)))
    return turns


def check_reply(tool_calls: list[dict[str, Any]], content: str | None, *,
                text_actions: bool = False) -> tuple[bool, list[str], str]:
    """(passed, actions, why) for one chat reply, read by the agent's own parser (``agents.replies``): a pass
    means the rollout would execute it. ``text_actions``: the call is written as JSON text."""
    message = {"role": "assistant", "content": content, "tool_calls": tool_calls}
    decision = decision_from_text(message) if text_actions else decision_from_message(message)
    if not decision.valid:
        return False, [], decision.error or "invalid reply"
    if decision.terminate:
        return False, [], f"terminate instead of interact ({decision.reasoning[:80]!r})"
    return True, decision.actions, "ok"


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
        "# or play it in Crafter (from this folder: its model card says how, and where it is served)",
        f"crafter-tui rollout --model {shlex.quote(model)} --episodes 10",
    ])
