"""The random baseline: deterministic per episode seed, one valid action per turn."""

from __future__ import annotations

import json

from crafter_tui.agents.random_agent import RANDOM_REASONING, RandomAgent
from crafter_tui.agents.prompting import SYSTEM_PROMPT
from crafter_tui.world.rules import ACTIONS
from tests.test_agents_scripted import play


async def test_same_seed_same_actions_and_messages():
    first = await play(RandomAgent(), 7, max_steps=80)
    second = await play(RandomAgent(), 7, max_steps=80)
    assert [d.assistant_message for d in first.decisions] == [d.assistant_message for d in second.decisions]
    other = await play(RandomAgent(), 8, max_steps=80)
    assert [d.actions for d in first.decisions] != [d.actions for d in other.decisions]


async def test_reseeds_on_each_episode():
    agent = RandomAgent()
    await play(agent, 1, max_steps=30)
    reused = await play(agent, 4, max_steps=50)
    fresh = await play(RandomAgent(), 4, max_steps=50)
    assert [d.actions for d in reused.decisions] == [d.actions for d in fresh.decisions]


async def test_one_valid_action_per_turn_as_an_interact_call():
    episode = await play(RandomAgent(), 2, max_steps=200)
    assert len(episode.decisions) == len(episode.states) >= 100  # one step per turn (it may die early)
    used = set()
    for turn, decision in enumerate(episode.decisions):
        (action,) = decision.actions
        assert action in ACTIONS
        used.add(action)
        assert decision.reasoning == RANDOM_REASONING
        (call,) = decision.assistant_message["tool_calls"]
        assert call["id"] == f"call_2_{turn}" and call["function"]["name"] == "interact"
        assert json.loads(call["function"]["arguments"]) == {"actions": [action], "reasoning": RANDOM_REASONING}
    assert len(used) >= 12  # uniform over 17 actions: 100+ draws cover nearly all of them


def test_attributes():
    agent = RandomAgent()
    assert agent.kind == "random" and agent.model == "random"
    assert agent.system_prompt == SYSTEM_PROMPT and not agent.needs_semantic_map
