"""Playing a model trained here the way it was trained, on the host that serves it.

``bind_model`` looks the model up (our job registry first, then the local service's ``/v1/models``,
which it never starts just to ask), applies its card to the rollout — observation, history, system
prompt, reply shape, sampling — and routes the agent to the host that trained it. A value given
explicitly (a flag, a console form field) that contradicts the card is refused with the difference
named, unless the user asks for it (``allow_mismatch``), and then it is recorded in the run. Config
file values are defaults: the card, which is about this one model, wins over them. A model nobody
here trained is played exactly as before. ``serving`` keeps the local service up while a bound
model plays (starting it, from the data folder that holds the model, when needed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from crafter_tui.agents.prompting import SYSTEM_PROMPTS, TOOLS, stable_hash
from crafter_tui.config import AppConfig
from crafter_tui.dataset.card import ModelCard, parse_card
from crafter_tui.errors import UserError
from crafter_tui.finetune.hosts import normalise_base_url
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS

#: Agents that play a model (the others ignore cards).
MODEL_AGENTS = frozenset({"openai", "dagger"})
#: The flags a card has values for (``card_values``): given explicitly, they must agree with it.
CARD_FLAGS = ("observation", "history_turns", "temperature", "max_tokens")


class KnownModel(BaseModel):
    """A model trained here: its card, the host that serves it, and where we learnt of it."""

    model: str
    card: ModelCard | None
    host: str
    base_url: str | None = None
    service_dir: str | None = None
    source: str


class Binding(BaseModel):
    """A rollout with a known model's card applied and its endpoint routed."""

    spec: RolloutSpec
    config: AppConfig
    known: KnownModel | None = None
    notes: list[str] = []


def find_known_model(config: AppConfig, model: str) -> KnownModel | None:
    """The model as our job registry knows it, else as the running local service describes it, else None."""
    from crafter_tui.finetune.registry import JobRegistry

    entry = JobRegistry.from_data_dir(config.storage.data_dir).find_model(model)
    if entry is not None:
        return KnownModel(model=model, card=entry.card, host=entry.host, base_url=entry.base_url,
                          service_dir=entry.service_dir, source=f"job {entry.job_id} in {config.storage.data_dir}")
    card = _served_card(config, model)
    if card is not None:
        return KnownModel(model=model, card=card, host="local", base_url=config.finetune.local_url,
                          source=f"the service at {config.finetune.local_url}")
    return None


def _served_card(config: AppConfig, model: str) -> ModelCard | None:
    """The card the local service keeps for ``model`` (None when it is not running or does not know it)."""
    import httpx

    from crafter_tui.finetune.local_service import is_up

    url = config.finetune.local_url.rstrip("/")
    if not is_up(url, timeout=0.5):
        return None
    try:
        reply = httpx.get(f"{url}/models/{model}", headers=_local_auth(config), timeout=5.0)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    try:
        card = reply.json().get("card")
    except ValueError:
        return None
    return parse_card(card, where=f"{url}/models/{model}") if isinstance(card, dict) else None


def _local_auth(config: AppConfig) -> dict[str, str]:
    """The local service's bearer header (none without a token)."""
    token = config.finetune.local_token
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def card_values(card: ModelCard) -> dict[str, Any]:
    """What the card says each flag of ``CARD_FLAGS`` must be (None where it says nothing)."""
    f, sampling = card.format, card.sampling
    return {"observation": f.observation if f else None, "history_turns": f.history_turns if f else None,
            "temperature": sampling.temperature if sampling else None,
            "max_tokens": sampling.max_tokens if sampling else None}


def card_mismatches(card: ModelCard, given: dict[str, Any]) -> list[str]:
    """Every way the given values (and this version's wording and tools) contradict ``card``."""
    wanted = card_values(card)
    found = []
    for name in CARD_FLAGS:
        value, expected = given.get(name), wanted[name]
        if value is not None and expected is not None and value != expected:
            found.append(f"--{name.replace('_', '-')} {value!r} (trained with {expected!r})")
    f = card.format
    if f is not None:
        current = OBSERVATION_REVISIONS[f.observation]
        if f.observation_revision != current:
            found.append(f"the {f.observation!r} observation is worded as revision {current} by this version "
                         f"(trained on revision {f.observation_revision})")
        if f.actions == "tools" and f.tools_hash is not None and f.tools_hash != stable_hash(TOOLS):
            found.append("the interact/terminate tools changed since the model was trained")
    return found


def describe_card(card: ModelCard) -> str:
    """One line: how the card says the model is played."""
    f = card.format
    if f is None:
        return "its data mixed play settings (" + ", ".join(card.mixed) + ")"
    text = (f"{f.observation} observation (revision {f.observation_revision}), {f.history_turns} history turns, "
            f"actions as {f.actions}")
    if card.sampling is not None:
        text += f", temperature {card.sampling.temperature:g}, max_tokens {card.sampling.max_tokens}"
    return text


def bind_model(spec: RolloutSpec, config: AppConfig, given: dict[str, Any] | None = None, *,
               allow_mismatch: bool = False, where: str = "--model") -> Binding:
    """``spec``/``config`` with the known model's card applied and its endpoint routed (unchanged for a model
    nobody here trained, and for the scripted and random agents).

    ``given``: the values the user gave explicitly (``observation``, ``history_turns``, ``temperature``,
    ``max_tokens``, ``base_url``); anything else comes from the card when it has a value.
    """
    given = {key: value for key, value in (given or {}).items() if value is not None}
    if spec.agent not in MODEL_AGENTS:
        return Binding(spec=spec, config=config)
    known = find_known_model(config, spec.model)
    if known is None:
        return Binding(spec=spec, config=config)
    config = config.model_copy(deep=True)
    notes = [_route(known, config, given.get("base_url"))]
    card = known.card
    if card is None or card.format is None:
        why = "no model card" if card is None else f"a card whose data mixed {', '.join(card.mixed)}"
        notes.append(f"{spec.model} has {why}: played with the flags and defaults")
        return Binding(spec=spec, config=config, known=known, notes=notes)
    mismatches = card_mismatches(card, given)
    if mismatches and not allow_mismatch:
        raise UserError(f"{spec.model} was trained to be played with {describe_card(card)}; "
                        f"{'; '.join(mismatches)}. Drop those flags to play it as it was trained, or add "
                        "--allow-mismatch to play it anyway (recorded in the run)", where=where)
    return Binding(spec=_apply(spec, config, card, given, mismatches), config=config, known=known,
                   notes=notes + [f"played as its model card says: {describe_card(card)}"])


def _apply(spec: RolloutSpec, config: AppConfig, card: ModelCard, given: dict[str, Any],
           mismatches: list[str]) -> RolloutSpec:
    """The card's values wherever the user gave none (``config``'s sampling is set in place)."""
    wanted = {name: value for name, value in card_values(card).items() if value is not None}
    chosen = {**wanted, **{k: v for k, v in given.items() if k in CARD_FLAGS}}
    f = card.format
    assert f is not None
    config.eval.temperature = chosen.get("temperature", config.eval.temperature)
    config.eval.max_tokens = chosen.get("max_tokens", config.eval.max_tokens)
    observation = chosen["observation"]
    prompt = f.system_prompt if observation == f.observation else SYSTEM_PROMPTS[observation]
    return spec.model_copy(update={
        "observation": observation, "history_turns": chosen["history_turns"], "system_prompt": prompt,
        "actions": f.actions, "model_card": card.model_dump(mode="json"), "mismatches": tuple(mismatches)})


def _route(known: KnownModel, config: AppConfig, base_url: str | None) -> str:
    """Point the agent at the host that serves ``known`` (a ``--base-url`` given by the user wins)."""
    if base_url is not None:
        return f"{known.model}: served at {base_url} (--base-url)"
    if known.host == "local":
        url = known.base_url or config.finetune.local_url
        config.openai.base_url = url
        config.openai.api_key = config.finetune.local_token or SecretStr("local")
        config.finetune.local_url = url
        return f"{known.model}: trained by the local service, played at {url}"
    if known.host == "synth":
        url = config.finetune.synth_base_url or known.base_url
        if not url:
            raise UserError(f"{known.model} was trained on the Synth service, but no Synth base URL is configured",
                            where="[finetune] synth_base_url or SYNTH_BASE_URL")
        url = normalise_base_url(url)  # the guide's MODAL_BASE_URL has no /v1
        config.openai.base_url = url
        config.openai.api_key = config.finetune.synth_api_key
        return f"{known.model}: trained on the Synth service, played at {url}"
    if known.host == "modal":
        if config.finetune.modal_serve_url:  # the Modal app's serve function (modal_serve)
            url = normalise_base_url(config.finetune.modal_serve_url)
            config.openai.base_url = url
            config.openai.api_key = config.finetune.modal_serve_token
            return f"{known.model}: trained on Modal, played at {url}"
        from crafter_tui.services.finetune import MODAL_SERVING_HINT

        raise UserError(MODAL_SERVING_HINT.format(model=known.model) + "; or give --base-url where it is served",
                        where=known.model)
    return f"{known.model}: trained on {known.host}, played at {config.openai.base_url}"


@asynccontextmanager
async def serving(binding: Binding) -> AsyncIterator[None]:
    """While the block runs, the bound model's local service answers (started if needed, stopped after)."""
    known = binding.known
    if known is None or known.host != "local" or binding.config.openai.base_url != binding.config.finetune.local_url:
        yield
        return
    from crafter_tui.finetune.local_service import running_local_service

    data_dir = Path(known.service_dir) if known.service_dir else None
    async with running_local_service(binding.config, data_dir=data_dir) as (url, _started):
        await asyncio.to_thread(_check_served, url, known, binding.config)
        yield


def _check_served(url: str, known: KnownModel, config: AppConfig) -> None:
    """Refuse to play when the service at ``url`` is another one, which does not have the model."""
    import httpx

    try:
        status = httpx.get(f"{url.rstrip('/')}/models/{known.model}", headers=_local_auth(config),
                           timeout=10.0).status_code
    except httpx.HTTPError as exc:
        raise UserError(f"the fine-tune service at {url} did not answer ({exc})", where=known.model) from None
    if status == 404:
        where = f" (its data: {known.service_dir})" if known.service_dir else ""
        raise UserError(f"the service answering at {url} does not serve {known.model}, which the local service "
                        f"trained{where}; stop the other service or set [finetune] local_url", where=known.model)


def bind_resume(spec: RolloutSpec, config: AppConfig, given: dict[str, Any]) -> Binding:
    """``--resume``: refuse given values that contradict the recorded run; serve its model where it was played."""
    from pydantic import ValidationError

    from crafter_tui.rollout.resume import check_resume_flags
    from crafter_tui.rollout.runner import resolve_run_dir
    from crafter_tui.rollout.writer import load_run_record

    run_dir = resolve_run_dir(spec.out_dir, spec.resume or "")
    try:
        record = load_run_record(run_dir)
    except (ValidationError, ValueError) as exc:
        raise UserError(f"unreadable run record ({type(exc).__name__})", where=str(run_dir / "run.json")) from None
    check_resume_flags(record, given, where="--resume")
    known = find_known_model(config, record.model) if record.agent in MODEL_AGENTS else None
    config = config.model_copy(deep=True)
    if known is not None and known.host == "local" and record.endpoint:
        config.openai.base_url = config.finetune.local_url = record.endpoint
    return Binding(spec=spec, config=config, known=known)
