"""The DAgger agent: the student's actions are executed, the expert's decision for the very state the
student reached is the turn's label, and beta mixes in expert turns reproducibly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crafter_tui.agents import make_agent
from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.dagger import DaggerAgent
from crafter_tui.agents.openai_agent import OpenAIAgent
from crafter_tui.agents.prompting import SYSTEM_PROMPTS, interact_message
from crafter_tui.agents.scripted import ScriptedAgent
from crafter_tui.config import AppConfig
from crafter_tui.rollout.envs import LocalEnv
from crafter_tui.rollout.episode import EpisodeJob, play_episode
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTION_IDS
from crafter_tui.world.text_obs import OBSERVATION_FORMATS

STUDENT_REASONING = "the student's own reply"
#: A student that wanders in a fixed cycle the expert would not follow (it never collects anything on purpose).
STUDENT_CYCLE = (["move_left", "move_left"], ["noop"], ["move_up"], ["do"], ["move_right", "move_down"])


class CyclingStudent:
    """A stand-in for the served model: deterministic replies, recorded prompts."""

    kind = "openai"
    model = "student-model"
    needs_semantic_map = False

    def __init__(self) -> None:
        self.system_prompt: str | None = "student prompt"
        self.history_turns = 0
        self.seen: list[str] = []
        self.results: list[str] = []

    async def start_episode(self, seed: int) -> None:
        self.seen.clear()

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        self.seen.append(obs.text)
        actions = STUDENT_CYCLE[obs.turn % len(STUDENT_CYCLE)]
        return AgentDecision(actions=list(actions), reasoning=STUDENT_REASONING,
                             assistant_message=interact_message(actions, STUDENT_REASONING, f"s{obs.turn}"))

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        self.results.append(tool_result)

    async def aclose(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []

    def step(self, record: dict[str, Any]) -> None:
        self.steps.append(record)

    def turn(self, record: dict[str, Any]) -> None:
        self.turns.append(record)

    def progress(self, *args: Any) -> None:
        pass


def _call(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["tool_calls"][0]["function"]["arguments"])


async def _play(agent: DaggerAgent, seed: int, max_steps: int = 80) -> ListSink:
    spec = RolloutSpec(agent="dagger", model="student-model", max_steps=max_steps, history_turns=0,
                       observation="brief")
    agent.system_prompt = SYSTEM_PROMPTS["brief"]
    sink = ListSink()
    await play_episode(spec, EpisodeJob(episode=0, seed=seed), LocalEnv("normal", max_steps), agent, sink, "run")
    return sink


async def test_the_student_acts_and_each_turn_is_labelled_with_the_experts_decision_for_that_state():
    student = CyclingStudent()
    sink = await _play(DaggerAgent(student, ScriptedAgent()), seed=7)
    turns = sink.turns
    assert len(turns) > 10
    # what was executed is the student's: the turn's actions, the steps, the tool results
    for record in turns:
        assert record["actions"] == STUDENT_CYCLE[record["turn"] % len(STUDENT_CYCLE)]
        assert record["extra"]["executed_by"] == "student"
        assert _call(record["extra"]["executed"])["reasoning"] == STUDENT_REASONING
        assert record["tool_result"].startswith(f"Executed {len(record['actions'])} action(s): "
                                                f"{', '.join(record['actions'])}")
    assert [s["action_name"] for s in sink.steps] == [a for r in turns for a in r["actions"]][:len(sink.steps)]
    # the label (the exported assistant message) is never the student's reply ...
    assert all(_call(r["assistant"])["reasoning"] != STUDENT_REASONING for r in turns)
    # ... it is what an expert that watched the student's trajectory decides in that exact state
    world, expert, render = CrafterWorld("normal", max_steps=80), ScriptedAgent(), OBSERVATION_FORMATS["brief"]
    state = world.reset(7)
    await expert.start_episode(7)
    for record in turns:
        text = render(state, turn=record["turn"], max_steps=80)
        assert text == record["observation"] == student.seen[record["turn"]]
        label = await expert.act(TurnObservation(state, text, record["turn"], 80, world.semantic_map()), [])
        assert record["assistant"] == label.assistant_message
        assert record["extra"]["label_goal"] == label.extra["goal"]
        for name in record["actions"]:
            state = world.step(ACTION_IDS[name]).state
    labels = [tuple(_call(r["assistant"])["actions"]) for r in turns]
    assert sum(label != tuple(r["actions"]) for label, r in zip(labels, turns)) > len(turns) // 2


async def test_beta_one_executes_the_expert_and_matches_the_expert_playing_alone():
    sink = await _play(DaggerAgent(CyclingStudent(), ScriptedAgent(), beta=1.0), seed=3, max_steps=60)
    alone = await _play_expert(seed=3, max_steps=60)
    assert all(r["extra"]["executed_by"] == "expert" for r in sink.turns)
    assert [r["actions"] for r in sink.turns] == [r["actions"] for r in alone.turns]
    assert [r["assistant"] for r in sink.turns] == [r["assistant"] for r in alone.turns]


async def _play_expert(seed: int, max_steps: int) -> ListSink:
    spec = RolloutSpec(agent="scripted", max_steps=max_steps, history_turns=0, observation="brief")
    sink = ListSink()
    await play_episode(spec, EpisodeJob(episode=0, seed=seed), LocalEnv("normal", max_steps), ScriptedAgent(),
                       sink, "run")
    return sink


async def test_beta_mixes_expert_turns_reproducibly_per_episode_seed():
    async def who(seed: int) -> list[str]:
        sink = await _play(DaggerAgent(CyclingStudent(), ScriptedAgent(), beta=0.5), seed=seed, max_steps=60)
        for record in sink.turns:
            executed = STUDENT_CYCLE[record["turn"] % len(STUDENT_CYCLE)] if record["extra"]["executed_by"] == \
                "student" else _call(record["assistant"])["actions"]
            assert record["actions"] == list(executed)
        return [r["extra"]["executed_by"] for r in sink.turns]

    first, again, other = await who(11), await who(11), await who(12)
    assert first == again
    assert {"student", "expert"} <= set(first)
    assert first[:len(other)] != other[:len(first)]


def test_the_factory_builds_the_served_model_as_student_with_the_configured_beta():
    config = AppConfig()
    config.openai.base_url = "http://127.0.0.1:9/v1"
    config.eval.expert_beta = 0.25
    agent = make_agent("dagger", model="ft:crafter-tiny:x", config=config)
    assert isinstance(agent, DaggerAgent) and isinstance(agent.student, OpenAIAgent)
    assert isinstance(agent.expert, ScriptedAgent)
    assert agent.beta == 0.25 and agent.model == "ft:crafter-tiny:x" and agent.needs_semantic_map
    agent.history_turns, agent.system_prompt = 2, SYSTEM_PROMPTS["brief"]
    assert agent.student.history_turns == 2 and agent.student.system_prompt == SYSTEM_PROMPTS["brief"]
    with pytest.raises(ValueError, match="beta"):
        DaggerAgent(CyclingStudent(), ScriptedAgent(), beta=1.5)
