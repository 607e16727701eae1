"""The one configuration model.

Precedence, lowest to highest: defaults < ``crafter_config.toml`` < environment variables
< command-line flags. Section names follow the original workflow guide (``[eval]``,
``[service]``, ``[output]``, ``[openai]``) plus our own. Unknown keys and wrong types are
errors that name the key and the file, because a silently ignored typo in a config is a
wasted experiment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from crafter_tui.errors import ConfigError

DEFAULT_CONFIG_NAME = "crafter_config.toml"
#: The original guide's trace folder: its step 1 writes there and its step 2 (``filter --input-dir
#: traces_v2_synth``) reads it, so the guide's commands work as written.
DEFAULT_TRACE_DIR = Path("traces_v2_synth")
CONFIG_ENV_VAR = "CRAFTER_TUI_CONFIG"

#: ``dagger``: the ``openai`` model plays while the scripted expert labels every turn (``agents.dagger``).
AgentKind = Literal["scripted", "random", "openai", "dagger"]
#: Text observation formats (``world.text_obs.OBSERVATION_FORMATS``): full for LLMs, compact and brief for small models.
ObservationFormat = Literal["full", "compact", "brief"]
Difficulty = Literal["peaceful", "easy", "normal", "hard"]
#: Model names that mean a built-in agent rather than a served model.
NON_LLM_MODELS: dict[str, AgentKind] = {"scripted-expert": "scripted", "scripted": "scripted", "random": "random"}
#: The model name recorded for each built-in agent.
AGENT_MODEL_NAMES: dict[str, str] = {"scripted": "scripted-expert", "random": "random"}


def http_url(value: str) -> str:
    """An endpoint must be an http(s) URL with a host: ``notaurl`` is refused when the config is read,
    naming its key, not deep inside a client after the run folder exists."""
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]


class Section(BaseModel):
    """Base for config sections: strict keys, validated assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EvalSection(Section):
    """What to play: the rollout/eval defaults (``[eval]`` in the original guide)."""

    agent: AgentKind = "scripted"
    model_name: str = "scripted-expert"
    episodes: int = Field(10, ge=1, le=1_000_000)
    max_steps: int = Field(300, ge=1, le=100_000, description="env steps per episode")
    max_turns: int | None = Field(None, ge=1, description="agent decisions (LLM calls) per episode")
    difficulty: Difficulty = "normal"
    seed: int = Field(0, ge=0, lt=2**31)
    concurrency: int = Field(8, ge=1, le=4096)
    episode_timeout: float | None = Field(None, gt=0, description="seconds per episode")
    history_turns: int = Field(4, ge=0, le=64, description="past turns shown to an LLM agent")
    observation: ObservationFormat = Field("full", description="text observation format (and its system prompt)")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=65_536)
    render_frames: bool = False
    expert_beta: float = Field(0.0, ge=0.0, le=1.0, description="agent dagger: chance per turn of executing the "
                               "scripted expert's decision instead of the model's (seeded by the episode seed)")
    max_failed_fraction: float = Field(0.1, ge=0.0, le=1.0, description="rollout/eval exit non-zero when more "
                                       "than this fraction of the episodes failed (agent, env or timeout errors)")

    @model_validator(mode="after")
    def _agent_from_model(self) -> "EvalSection":
        """A model name without an agent selects the agent that plays it (the original guide's
        ``[eval] model_name = "gpt-4o-mini"``, like ``--model``), so what plays is what is recorded;
        a scripted or random agent is always recorded under its own name."""
        agent = self.agent
        if "agent" not in self.model_fields_set and "model_name" in self.model_fields_set:
            agent = NON_LLM_MODELS.get(self.model_name, "openai")
        name = AGENT_MODEL_NAMES.get(agent, self.model_name)
        if (agent, name) != (self.agent, self.model_name):  # without re-validating (assignment would recurse)
            self.__dict__.update(agent=agent, model_name=name)
        return self


class ServiceSection(Section):
    """The Crafter environment service (``--env remote``)."""

    base_url: str = "http://localhost:8901"  # checked where it is used, naming --env-url (rollout.spec)
    timeout: float = Field(30.0, gt=0)
    token: SecretStr | None = None


class OutputSection(Section):
    """Where traces go."""

    save_traces: bool = True
    save_detailed_results: bool = True
    trace_dir: Path = Field(DEFAULT_TRACE_DIR, description="where rollouts write their run folders and what filter, "
                            "analyze and the console read")


#: A reply of ``max_tokens`` (<= 65,536 tokens) is far below 1 MiB of JSON; anything bigger is a broken endpoint.
DEFAULT_MAX_REPLY_BYTES = 1 << 20


class OpenAISection(Section):
    """Any OpenAI-compatible endpoint used by the ``openai`` agent."""

    base_url: HttpUrl = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0, le=50)
    max_reply_bytes: int = Field(DEFAULT_MAX_REPLY_BYTES, ge=1024, le=1 << 30,
                                 description="a model reply (the response body) larger than this is recorded "
                                 "truncated to it, as an invalid turn, and never re-sent whole")
    #: ask for tool_choice "required" + strict tools: "on", "off", or "auto" (on for [finetune] local_url)
    structured: Literal["auto", "on", "off"] = "auto"
    confirm_above_usd: float = Field(5.0, ge=0, description="rollout/eval/pipeline ask before an LLM run whose "
                                     "estimated cost is above this (--yes skips the question)")


class FilterSection(Section):
    """Defaults for ``crafter-tui filter`` (every flag of the filter command) and for the selection of
    ``crafter-tui pipeline``."""

    min_achievements: int | None = Field(None, ge=0)
    min_reward: float | None = None
    max_turns: int | None = Field(None, ge=1)
    require_termination: bool = False
    models: list[str] = Field(default_factory=list)
    runs: list[str] = Field(default_factory=list)
    achievements: list[str] = Field(default_factory=list)
    min_progression: float | None = Field(None, ge=0.0, le=1.0)
    max_invalid_fraction: float | None = Field(None, ge=0.0, le=1.0)
    mode: Literal["trajectory", "turn"] = "turn"
    keep_before_achievement: int | None = Field(None, ge=1)
    drop_invalid: bool = False
    dedupe: bool = False
    balance_actions: bool = False
    max_examples: int | None = Field(None, ge=1)
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = 0
    text_actions: bool = False
    drop_reasoning: bool = False
    goal_reasoning: bool = False
    cost_model: str = "gpt-4o-mini-2024-07-18"


class FinetuneSection(Section):
    """Defaults for fine-tune jobs and the hosts they run on."""

    backend: Literal["openai", "synth", "modal", "local"] = "local"
    model: str = "crafter-tiny"
    epochs: int = Field(3, ge=1, le=100)
    batch_size: int = Field(4, ge=1, le=4096)
    learning_rate: float | None = Field(None, gt=0)
    suffix: str | None = Field(None, max_length=64)
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    local_url: HttpUrl = "http://127.0.0.1:8000/v1"
    local_token: SecretStr | None = None
    synth_base_url: HttpUrl | None = None
    synth_api_key: SecretStr | None = None
    modal_app: str = "crafter-tui-finetune"
    modal_gpu: str = "H100"
    modal_serve_url: str | None = Field(None, description="the URL of the Modal app's 'serve' function (printed by "
                                        "'modal deploy'), where Modal-trained models are played")
    modal_serve_token: SecretStr | None = None
    threads: int | None = Field(None, ge=1, le=256)


class StorageSection(Section):
    """Where the tool keeps its own state (job registry, experiments, models)."""

    data_dir: Path = Path(".crafter_tui")


class EvaluationSection(Section):
    """Evaluation extras: user metric functions (``file.py:function`` or entry points)."""

    custom_metrics: list[str] = Field(default_factory=list)
    resamples: int = Field(9_999, ge=99, le=1_000_000)
    alpha: float = Field(0.05, gt=0, lt=1)


class TuiSection(Section):
    """Console preferences: theme and remapped keys (binding id -> keys)."""

    theme: str = "textual-dark"
    keymap: dict[str, str] = Field(default_factory=dict)


class AppConfig(Section):
    """Everything configurable, one object passed down from the front ends."""

    eval: EvalSection = Field(default_factory=EvalSection)
    service: ServiceSection = Field(default_factory=ServiceSection)
    output: OutputSection = Field(default_factory=OutputSection)
    openai: OpenAISection = Field(default_factory=OpenAISection)
    filter: FilterSection = Field(default_factory=FilterSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    tui: TuiSection = Field(default_factory=TuiSection)


#: environment variable -> (section, key). Later entries win over earlier ones.
ENV_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("OPENAI_BASE_URL", "openai", "base_url"),
    ("OPENAI_API_KEY", "openai", "api_key"),
    ("MODAL_BASE_URL", "finetune", "synth_base_url"),
    ("SYNTH_BASE_URL", "finetune", "synth_base_url"),
    ("MODAL_API_KEY", "finetune", "synth_api_key"),
    ("SYNTH_API_KEY", "finetune", "synth_api_key"),
    ("CRAFTER_ENV_URL", "service", "base_url"),
    ("CRAFTER_TUI_DATA_DIR", "storage", "data_dir"),
    ("CRAFTER_TUI_MODAL_SERVE_URL", "finetune", "modal_serve_url"),
    ("CRAFTER_TUI_MODAL_SERVE_TOKEN", "finetune", "modal_serve_token"),
)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_message(error: ValidationError, where: str) -> ConfigError:
    first = error.errors()[0]
    key = _dotted(first["loc"])
    if first["type"] == "extra_forbidden":
        return ConfigError(f"unknown key '{key}'", where=where)
    got = first.get("input")
    return ConfigError(f"bad value for '{key}': {first['msg']} (got {got!r})", where=where)


#: A config file is a few KB; anything far bigger is a wrong path, refused before it is read.
MAX_CONFIG_BYTES = 1024 * 1024


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every way it can be unreadable into a ConfigError naming the file
    (a directory, bytes that are not UTF-8, a huge or absurdly nested file, a syntax error and its line)."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes: not a config file", where=str(path))
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", where=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply", where=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None


def find_config_file(explicit: Path | None) -> Path | None:
    """The config file to use: the flag, then ``$CRAFTER_TUI_CONFIG``, then ./crafter_config.toml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_layer(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Values taken from environment variables, as a nested dict of sections."""
    environ = dict(os.environ) if environ is None else environ
    layer: dict[str, dict[str, Any]] = {}
    for var, section, key in ENV_OVERRIDES:
        value = environ.get(var)
        if value:
            layer.setdefault(section, {})[key] = value
    return layer


def load_config(
    path: Path | None = None,
    *,
    flags: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> AppConfig:
    """Build the configuration from file, environment and flags (flags win).

    ``flags`` holds only the flags the user actually gave (``None`` values are dropped), so
    a flag left at its default never hides a value from the file.
    """
    file_path = find_config_file(path)
    data: dict[str, Any] = read_toml(file_path) if file_path else {}
    where = str(file_path) if file_path else "defaults"
    try:
        AppConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_message(exc, where) from None
    data = _merge(data, env_layer(environ))
    try:
        AppConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_message(exc, "environment") from None
    given = {
        section: {k: v for k, v in values.items() if v is not None}
        for section, values in (flags or {}).items()
    }
    data = _merge(data, given)
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_message(exc, "command line") from None
