"""Playing one episode: the loop every executor (in-process, worker process, Modal) runs.

The loop turns agent decisions into env steps and emits plain trace records (dicts in the
``traces.schema`` shape) to a sink. It never writes files itself, so the same code runs in a
worker process or a Modal container and ships its records back to the one trace writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Protocol

from crafter_tui.agents.base import Agent, AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.prompting import SYSTEM_PROMPTS, tool_result_text
from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.rollout.envs import EpisodeEnv, LocalEnv, make_env
from crafter_tui.rollout.events import RecordSink
from crafter_tui.rollout.replay import ReplayAgent, ReplayMismatch, ReplayPoint, VerifyingSink
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.traces.jsonl import AsciiPlainRecord, PlainRecord, fast_float, plain_values
from crafter_tui.traces.schema import EpisodeSummary, Termination
from crafter_tui.world.env import StepOutcome
from crafter_tui.world.rules import ACHIEVEMENTS, ACTION_IDS, ITEMS
from crafter_tui.world.text_obs import OBSERVATION_FORMATS, view_cells_and_symbols, view_symbols

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.1
#: An episode that plays alone (one lane) yields to the event loop at most this often: nothing
#: else's order depends on its turns, and a yield per turn was ~5% of the loop's time.
ALONE_YIELD_INTERVAL_S = 0.02
_INVENTORY_COUNTS = itemgetter(*ITEMS)


def build_agent(spec: RolloutSpec, config: AppConfig) -> Agent:
    """A fresh agent for one episode, with the spec's history window and observation format's prompt."""
    from crafter_tui.agents import make_agent

    agent = make_agent(spec.agent, model=spec.model, config=config)
    agent.history_turns = spec.history_turns
    agent.system_prompt = spec.system_prompt if spec.system_prompt is not None else SYSTEM_PROMPTS[spec.observation]
    if spec.actions == "text":
        if not hasattr(agent, "reply_actions"):
            raise UserError(f"the {spec.agent} agent cannot play a model that writes its actions as text",
                            where="--agent")
        agent.reply_actions = "text"
    return agent


class EnvFailure(Exception):
    """The environment (local or remote) failed; the episode ends with ``env_error``."""


class JobSink(RecordSink, Protocol):
    """A record sink that also hears when each episode starts and how it ended."""

    def started(self, job: "EpisodeJob") -> None: ...

    def episode(self, summary: EpisodeSummary) -> None: ...


@dataclass(slots=True)
class EpisodeJob:
    """One episode to play: its index in the run, its seed, and which attempt this is.

    ``replay``: the recorded turns an unfinished episode continues from (``rollout.replay``).
    """

    episode: int
    seed: int
    attempt: int = 0
    replay: ReplayPoint | None = None


@dataclass
class _Tally:
    """What the episode accumulated so far (enough to summarise it at any moment)."""

    steps: int = 0
    turns: int = 0
    reward: float = 0.0
    unlocked: set[str] = field(default_factory=set)
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    termination: Termination | None = None
    error: str | None = None


async def play_jobs(spec: RolloutSpec, config: AppConfig, jobs: list[EpisodeJob], run_id: str,
                    sink: JobSink, lanes: int) -> None:
    """Play ``jobs``, at most ``lanes`` at a time, each with a fresh env and agent.

    Every executor runs this: in this process, in a worker process, or in a Modal container;
    only the sink differs (the trace writer here, a message queue elsewhere).
    """
    gate = asyncio.Semaphore(max(1, lanes))
    alone = lanes <= 1 or len(jobs) <= 1  # episodes play one after another: no interleaving to keep

    async def one(job: EpisodeJob) -> None:
        async with gate:
            summary = None
            while summary is None:
                sink.started(job)
                env = make_env(spec, config)
                agent = build_agent(spec, config)
                try:
                    summary = await play_episode(spec, job, env, agent, sink, run_id, alone=alone)
                except ReplayMismatch as exc:  # its recorded turns cannot be continued: play it from its seed
                    log.warning("episode %s (seed %s): %s; playing it again from its seed", job.episode, job.seed, exc)
                    job = EpisodeJob(job.episode, job.seed, job.attempt + 1)
                finally:
                    await agent.aclose()
                    await env.close()
            sink.episode(summary)

    await asyncio.gather(*(one(job) for job in jobs))


def step_record(job: EpisodeJob, turn: int, action: int, outcome: StepOutcome,
                view: str | None = None, *, typed: bool = False) -> dict[str, Any]:
    """The step record of ``outcome`` (``view``: its state's ``view_symbols`` if the caller has it).

    ``typed``: the caller vouches that ``job``'s fields, ``turn`` and ``action`` are ints and
    that ``outcome`` comes from the embedded world, whose states and outcomes hold exactly
    int/bool/float/str values, tuples and lists (``CrafterWorld`` converts every field;
    ``tests/test_rollout_trace_encoding.py`` pins it). The record is then a ``PlainRecord``
    (the writer skips its walk over the values) once its two floats, which no type proves,
    are in the range where orjson and ``json`` agree; an ``AsciiPlainRecord``, as its strings
    are action and achievement names and map symbols, all printable ASCII (pinned by tests).
    """
    state = outcome.state
    reward, daylight = outcome.reward, round(state.daylight, 4)
    kind = AsciiPlainRecord if typed and fast_float(reward) and fast_float(daylight) else dict
    return kind(
        episode=job.episode, seed=job.seed, attempt=job.attempt,
        step=state.step, turn=turn, action=action, action_name=_ACTION_NAMES[action],
        reward=reward, done=outcome.done,
        pos=state.position, facing=state.facing, sleeping=state.sleeping,
        daylight=daylight,
        inventory=[*_INVENTORY_COUNTS(state.inventory)],
        view=view_symbols(state) if view is None else view,
        new_achievements=outcome.new_achievements,
    )


_ACTION_NAMES = list(ACTION_IDS)


async def play_episode(spec: RolloutSpec, job: EpisodeJob, env: EpisodeEnv, agent: Agent,
                       sink: RecordSink, run_id: str, *, alone: bool = False) -> EpisodeSummary:
    """Play ``job`` to the end (death, step/turn limit, agent stop, timeout or failure).

    ``alone``: no other episode plays in this loop meanwhile, so the episode need not yield
    after every turn to keep the episodes' turns interleaved (and the trace lines in order);
    it still yields every ``ALONE_YIELD_INTERVAL_S`` so event consumers, timeouts and
    cancellation are served.
    """
    tally = _Tally()
    started_at = datetime.now(timezone.utc)
    clock = time.perf_counter()
    if job.replay is not None:  # continue from the recorded turns (checked as they are played again)
        agent, sink = ReplayAgent(agent, job.replay.turns), VerifyingSink(sink, job.replay)
    try:
        if spec.episode_timeout is not None:
            async with asyncio.timeout(spec.episode_timeout):
                await _play(spec, job, env, agent, sink, tally, alone)
        else:
            await _play(spec, job, env, agent, sink, tally, alone)
    except TimeoutError:
        tally.termination, tally.error = "timeout", f"episode exceeded {spec.episode_timeout:g} s"
    except EnvFailure as exc:
        tally.termination, tally.error = "env_error", str(exc)
    return EpisodeSummary(
        episode=job.episode, seed=job.seed, attempt=job.attempt, run_id=run_id,
        agent=spec.agent, model=spec.model, difficulty=spec.difficulty,
        steps=tally.steps, turns=tally.turns, reward=round(tally.reward, 6),
        achievements=[name for name in ACHIEVEMENTS if name in tally.unlocked],
        num_achievements=len(tally.unlocked), termination=tally.termination or "max_turns",
        error=tally.error, invalid_actions=tally.invalid,
        prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
        started_at=started_at, finished_at=datetime.now(timezone.utc),
        wall_s=round(time.perf_counter() - clock, 4),
    )


def _env_failure(exc: Exception) -> EnvFailure:
    return EnvFailure(f"{exc.__class__.__name__}: {exc}")


def _world_call(method, *args):
    """``method(*args)`` on the embedded world, failures ended as ``_env_call`` ends them."""
    try:
        return method(*args)
    except Exception as exc:  # noqa: BLE001 - any env failure ends this episode, not the run
        raise _env_failure(exc) from exc


async def _env_call(coro):
    try:
        return await coro
    except (asyncio.CancelledError, TimeoutError):
        raise
    except Exception as exc:  # noqa: BLE001 - any env failure ends this episode, not the run
        raise _env_failure(exc) from exc


async def _play(spec: RolloutSpec, job: EpisodeJob, env: EpisodeEnv, agent: Agent,
                sink: RecordSink, tally: _Tally, alone: bool = False) -> None:
    await agent.start_episode(job.seed)
    state = await _env_call(env.reset(job.seed))
    cells = None  # the view ids of ``state`` when its step record converted them already
    # The embedded world (not a stand-in subclass) is called directly: ``LocalEnv`` only wraps its
    # calls in coroutines that never suspend, and those were a measurable part of the loop.
    world = env.world if type(env) is LocalEnv else None
    typed = world is not None and type(job.episode) is int and type(job.seed) is int and type(job.attempt) is int
    history: list[HistoryTurn] = []
    render = OBSERVATION_FORMATS[spec.observation]
    sink_step, sink_turn = sink.step, sink.turn
    # An agent whose every act() waits on I/O (an LLM call) already lets the other episodes run;
    # yielding again would hold its next request back behind every episode that is ready.
    yields_in_act = getattr(agent, "act_awaits_io", False)
    last_progress, last_yield = 0.0, time.monotonic()
    while True:
        if tally.turns >= spec.turn_limit:
            tally.termination = "max_turns"
            return
        semantic = None
        if agent.needs_semantic_map:
            if world is None:
                semantic = await _env_call(env.semantic_map())
            else:
                semantic = _world_call(world.semantic_map)
        text = render(state, turn=tally.turns, max_steps=spec.max_steps, cells=cells)
        obs = TurnObservation(state, text, tally.turns, spec.max_steps, semantic)
        try:
            decision = await agent.act(obs, history)
        except (asyncio.CancelledError, TimeoutError, ReplayMismatch):
            raise
        except Exception as exc:  # noqa: BLE001 - an agent failure ends this episode, not the run
            tally.termination, tally.error = "agent_error", f"{exc.__class__.__name__}: {exc}"
            return
        turn = tally.turns
        tally.turns += 1
        tally.prompt_tokens += decision.prompt_tokens
        tally.completion_tokens += decision.completion_tokens
        step_before = tally.steps
        turn_reward, turn_new, done = 0.0, [], False
        if not decision.valid:
            tally.invalid += 1
        for name in decision.actions if decision.valid and not decision.terminate else []:
            action = ACTION_IDS[name]
            if world is None:
                outcome = await _env_call(env.step(action))
            else:
                outcome = _world_call(world.step, action)
            tally.steps += 1
            tally.reward += outcome.reward
            turn_reward += outcome.reward
            if outcome.new_achievements:
                tally.unlocked.update(outcome.new_achievements)
                turn_new.extend(outcome.new_achievements)
            state = outcome.state
            cells, view = view_cells_and_symbols(state)
            sink_step(step_record(job, turn, action, outcome, view, typed=typed))
            if outcome.done:
                done = True
                tally.termination = "death" if outcome.terminated else "max_steps"
                break
        result = _tool_result(decision, turn_new, done)
        agent.record_result(decision, result)
        sink_turn(_turn_record(job, turn, step_before, text, decision, result, turn_reward, turn_new, typed))
        history.append(HistoryTurn(text, decision.assistant_message, result))
        now = time.monotonic()
        if done or now - last_progress >= PROGRESS_INTERVAL_S:
            last_progress = now
            sink.progress(job.episode, job.seed, tally.steps, tally.turns, len(tally.unlocked))
        if decision.terminate:
            tally.termination = "agent_terminated"
            return
        if done:
            return
        if yields_in_act:
            continue
        if not alone:
            await asyncio.sleep(0)  # let other episodes and the event consumer run
        elif now - last_yield >= ALONE_YIELD_INTERVAL_S:
            last_yield = now
            await asyncio.sleep(0)  # let the event consumer, timeouts and cancellation in


def _tool_result(decision: AgentDecision, new: list[str], done: bool) -> str:
    if not decision.valid:
        return f"Error: {decision.error}. No action was executed."
    if decision.terminate:
        return "Episode terminated."
    return tool_result_text(decision.actions, new, done)


def _turn_record(job: EpisodeJob, turn: int, step: int, observation: str, decision: AgentDecision,
                 result: str, reward: float, new: list[str], typed: bool = False) -> dict[str, Any]:
    """The turn record (``typed``: as ``step_record``'s; ``new`` holds the world's achievement names).

    When typed, the loop's own fields are plain by construction (ints, the observation and
    result strings, the world's names), so only the agent's parts are walked and the record
    is a ``PlainRecord``; its two floats are checked as the step record's are.
    """
    has_call = bool(decision.assistant_message.get("tool_calls"))
    record = {
        "episode": job.episode, "seed": job.seed, "attempt": job.attempt, "turn": turn, "step": step,
        "observation": observation, "assistant": decision.assistant_message,
        "tool_result": result if has_call else None,
        "actions": decision.actions if decision.valid else [], "reasoning": decision.reasoning,
        "valid": decision.valid, "error": decision.error, "raw": decision.raw,
        "terminate": decision.terminate, "reward": round(reward, 6), "new_achievements": new,
        "prompt_tokens": decision.prompt_tokens, "completion_tokens": decision.completion_tokens,
        "latency_ms": round(decision.latency_ms, 3),
        **({"extra": decision.extra} if decision.extra else {}),
    }
    if (typed and type(observation) is str and type(result) is str and type(step) is int
            and fast_float(record["reward"]) and fast_float(record["latency_ms"])
            and plain_values((record["assistant"], record["actions"], decision.reasoning, decision.valid,
                              decision.error, decision.raw, decision.terminate, decision.prompt_tokens,
                              decision.completion_tokens, decision.extra))):
        return PlainRecord(record)
    return record
