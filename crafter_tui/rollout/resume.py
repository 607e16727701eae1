"""``--resume``: a resumed run plays the experiment its ``run.json`` recorded, nothing else.

Every setting that shapes the episodes (agent, model, endpoint, sampling and the per-turn seed,
observation, history, system prompt, reply shape, limits, concurrency) is taken from the record;
a flag that says otherwise is refused with the difference named (``resume_conflicts``), because
a run whose episodes were played two ways has no one figure. Unfinished LLM episodes continue from
their last recorded turn (``rollout.replay``); the others are played again from their seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.rollout.episode import EpisodeJob
from crafter_tui.rollout.replay import STEP_RESUMABLE_AGENTS, replay_points
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.rollout.writer import attempts_started, finished_summaries
from crafter_tui.traces.schema import FAILED_TERMINATIONS, RunRecord
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS


def recorded_settings(record: RunRecord) -> dict[str, Any]:
    """Flag name -> the value the run was recorded with (what a flag given with ``--resume`` must equal)."""
    settings = record.settings
    return {
        "agent": record.agent, "model": record.model, "episodes": record.episodes, "seed": record.seed,
        "max_steps": record.max_steps, "max_turns": record.max_turns, "difficulty": record.difficulty,
        "history_turns": record.history_turns, "observation": settings.get("observation", "full"),
        "temperature": settings.get("temperature"), "max_tokens": settings.get("max_tokens"),
        "concurrency": settings.get("concurrency"), "episode_timeout": settings.get("episode_timeout"),
        "base_url": record.endpoint, "expert_beta": settings.get("expert_beta"),
    }


#: Settings a record may lack (runs recorded before they were): nothing to compare a flag with.
_MAYBE_UNRECORDED = frozenset({"temperature", "max_tokens", "concurrency", "expert_beta", "base_url"})


def resume_conflicts(record: RunRecord, given: dict[str, Any]) -> list[str]:
    """``--flag: recorded -> given`` for every flag given with ``--resume`` that differs from the record."""
    recorded = recorded_settings(record)
    conflicts = []
    for name, value in given.items():
        if value is None or name not in recorded or (recorded[name] is None and name in _MAYBE_UNRECORDED):
            continue
        if _normal(name, value) != _normal(name, recorded[name]):
            conflicts.append(f"--{name.replace('_', '-')}: recorded {recorded[name]!r}, given {value!r}")
    return conflicts


def _normal(name: str, value: Any) -> Any:
    if name == "base_url":
        from crafter_tui.agents.openai_agent import redact_url

        return redact_url(str(value)).rstrip("/")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def check_resume_flags(record: RunRecord, given: dict[str, Any], where: str) -> None:
    """Refuse flags that would change the recorded experiment, naming each difference."""
    conflicts = resume_conflicts(record, given)
    if conflicts:
        raise UserError(f"run {record.run_id!r} was recorded with other settings ({'; '.join(conflicts)}); "
                        "a resume plays the recorded experiment: drop those flags, or start a new run", where=where)


def check_wording(record: RunRecord, run_dir: Path) -> None:
    """Refuse to continue a run whose turns hold another wording of its observation format: one run,
    one wording (a record from before revisions were recorded holds revision 1 of a format still at 1)."""
    observation = record.settings.get("observation", "full")
    current = OBSERVATION_REVISIONS[observation]
    recorded = record.settings.get("observation_revision", 1 if current == 1 else None)
    if recorded != current:
        held = f"revision {recorded}" if recorded is not None else "an unrecorded revision"
        raise UserError(f"run {record.run_id!r} holds {held} of the {observation!r} observation and "
                        f"this version writes revision {current}; its episodes cannot be continued in another "
                        "wording: start a new run", where=str(run_dir / "run.json"))


def spec_for_resume(spec: RolloutSpec, config: AppConfig, record: RunRecord) -> tuple[RolloutSpec, AppConfig]:
    """The recorded experiment as a spec and config (where it runs — workers, env service — is the caller's)."""
    settings = record.settings
    spec = spec.model_copy(update={
        "agent": record.agent, "model": record.model, "episodes": record.episodes, "seed": record.seed,
        "max_steps": record.max_steps, "max_turns": record.max_turns, "difficulty": record.difficulty,
        "history_turns": record.history_turns, "run_id": record.run_id,
        "observation": settings.get("observation", "full"),
        "concurrency": settings.get("concurrency") or spec.concurrency,
        "episode_timeout": settings.get("episode_timeout"),
        "system_prompt": record.system_prompt,
        "actions": settings.get("reply_actions", "tools"),
        "model_card": record.model_card, "mismatches": tuple(record.mismatches),
    })
    config = config.model_copy(deep=True)
    for key in ("temperature", "max_tokens", "expert_beta"):
        if settings.get(key) is not None:
            setattr(config.eval, key, settings[key])
    if record.endpoint:
        config.openai.base_url = record.endpoint
    return spec, config


def resume_jobs(run_dir: Path, record: RunRecord) -> list[EpisodeJob]:
    """The episodes left to play: unfinished or failed ones, each as its next attempt; an LLM episode
    with recorded turns continues from them."""
    finished = finished_summaries(run_dir)
    done = {i for i, s in finished.items() if s.termination not in FAILED_TERMINATIONS}
    started = attempts_started(run_dir)
    pending = [i for i in range(len(record.seeds)) if i not in done]
    points = {}
    if record.agent in STEP_RESUMABLE_AGENTS:
        points = replay_points(run_dir, {i: started[i] for i in pending if i in started})
    return [EpisodeJob(i, record.seeds[i], started.get(i, -1) + 1, replay=points.get(i)) for i in pending]
