"""Experiments: named, versioned sets of episodes of one model, and where they are kept.

An experiment records what was evaluated (model, training data and its hash, epochs,
difficulty instances, seeds, code version) and points at the run folders that hold its
episodes. Registered experiments live as JSON under ``<data_dir>/experiments/<name>/<version>.json``.

The original guide's ``experiments.json`` (``{"experiments": [{name, model, training_data,
epochs, achievements: [numbers per episode], instances, version}]}``) is accepted as input
too, so numbers produced elsewhere can be compared; such an experiment has only
achievement counts (no seeds, so no pairing, and no per-achievement detail).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crafter_tui.errors import UserError
from crafter_tui.evaluation.episodes import RunEpisodes, find_run_dirs, is_run_dir, read_run
from crafter_tui.traces.jsonl import write_json_atomic
from crafter_tui.world.rules import ACHIEVEMENTS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_VERSION = re.compile(r"^v(\d+)\.(\d+)$")


class TrainingData(BaseModel):
    """The SFT file a model was trained on, identified by content, not just by name."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str | None = None


class Episode(BaseModel):
    """One evaluated episode as the comparison sees it (from a trace summary or an imported file)."""

    model_config = ConfigDict(extra="forbid")

    instance: str = "default"  # difficulty or other evaluation condition
    seed: int | None = None
    num_achievements: float = Field(ge=0)
    achievements: list[str] | None = None  # None: only the count is known
    reward: float | None = None
    steps: int | None = None
    turns: int | None = None
    termination: str | None = None
    invalid_actions: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    wall_s: float | None = None
    run_dir: str | None = None
    episode: int | None = None

    @field_validator("achievements")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(ACHIEVEMENTS))
            if unknown:
                raise ValueError(f"unknown achievements {unknown}")
        return value


class Experiment(BaseModel):
    """A named, versioned evaluation of one model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    model: str
    version: str = "v1.0"
    agent: str | None = None
    training_data: TrainingData | None = None
    epochs: int | None = Field(None, ge=0)
    instances: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    runs: list[str] = Field(default_factory=list)  # run folders holding the episodes
    git_commit: str | None = None
    package_version: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    settings: dict[str, Any] = Field(default_factory=dict)  # max_steps, temperature, ...
    episodes: list[Episode] = Field(default_factory=list)
    source: str | None = None  # where it was read from (file, registry)
    notes: str | None = None  # the changelog entry of this version: what changed since the last one (eval --notes)

    def settings_row(self) -> dict[str, Any]:
        """The flat settings a 'what differs' table compares."""
        row: dict[str, Any] = {
            "model": self.model, "version": self.version, "agent": self.agent,
            "training_data": self.training_data.path if self.training_data else None,
            "training_data_sha256": (self.training_data.sha256[:12] if self.training_data and
                                     self.training_data.sha256 else None),
            "epochs": self.epochs, "instances": ",".join(self.instances) or None,
            "episodes": len(self.episodes), "seeds": _seed_span(self.seeds),
            "git_commit": self.git_commit[:10] if self.git_commit else None,
            "package_version": self.package_version,
        }
        row.update({f"settings.{key}": value for key, value in sorted(self.settings.items())})
        return row


def _seed_span(seeds: list[int]) -> str | None:
    if not seeds:
        return None
    ordered = sorted(set(seeds))
    if ordered == list(range(ordered[0], ordered[0] + len(ordered))):
        return f"{ordered[0]}..{ordered[-1]}" if len(ordered) > 1 else str(ordered[0])
    return ",".join(map(str, ordered[:8])) + ("..." if len(ordered) > 8 else "")


# --- the original guide's experiments.json --------------------------------------------------------

class GuideExperiment(BaseModel):
    """One entry of the original guide's ``experiments.json``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    model: str
    training_data: str | TrainingData | None = None
    epochs: int | None = Field(None, ge=0)
    achievements: list[float] | None = None  # achievements per episode
    seeds: list[int] | None = None  # optional, aligned with achievements: enables pairing
    episodes: list[Episode] | None = None  # optional full detail instead of achievements
    instances: list[str] = Field(default_factory=list)
    version: str = "v1.0"
    agent: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    package_version: str | None = None
    runs: list[str] = Field(default_factory=list)

    @field_validator("achievements")
    @classmethod
    def _non_negative(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            for index, number in enumerate(value):
                if number < 0:
                    raise ValueError(f"achievements[{index}] is negative ({number})")
        return value

    @model_validator(mode="after")
    def _aligned(self) -> "GuideExperiment":
        if self.seeds is not None and self.achievements is not None and len(self.seeds) != len(self.achievements):
            raise ValueError(f"seeds has {len(self.seeds)} entries but achievements has {len(self.achievements)}")
        return self

    def to_experiment(self, source: str) -> Experiment:
        if self.episodes is not None:
            episodes = list(self.episodes)
        else:
            seeds = self.seeds or [None] * len(self.achievements or [])
            instance = self.instances[0] if len(self.instances) == 1 else "default"
            episodes = [Episode(instance=instance, seed=seed, num_achievements=value)
                        for value, seed in zip(self.achievements or [], seeds, strict=True)]
        data = self.training_data
        training = TrainingData(path=data) if isinstance(data, str) else data
        return Experiment(
            name=self.name, model=self.model, version=self.version, agent=self.agent, training_data=training,
            epochs=self.epochs, instances=list(self.instances), settings=dict(self.settings),
            seeds=sorted({e.seed for e in episodes if e.seed is not None}), episodes=episodes,
            git_commit=self.git_commit, package_version=self.package_version, runs=list(self.runs), source=source,
        )


class GuideExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiments: list[GuideExperiment] = Field(min_length=1)


def _validation_error(exc: ValidationError, where: str) -> UserError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    got = first.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return UserError(f"field '{field}': {first['msg']} (got {shown})", where=where)


def load_experiments_file(path: Path) -> list[Experiment]:
    """Experiments from a JSON file: the guide's ``{"experiments": [...]}``, one experiment
    object, or a list of them. Errors name the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("no such experiments file", where=str(path)) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        where=str(path)) from None
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None
    except RecursionError:
        raise UserError("not valid JSON: nested too deeply", where=str(path)) from None
    except IsADirectoryError:
        raise UserError("is a directory, not an experiments file", where=str(path)) from None
    if isinstance(data, list):
        data = {"experiments": data}
    elif isinstance(data, dict) and "experiments" not in data:
        data = {"experiments": [data]}
    try:
        parsed = GuideExperimentsFile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, str(path)) from None
    experiments = [entry.to_experiment(str(path)) for entry in parsed.experiments]
    names = [e.name for e in experiments]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"experiment names must be unique; repeated: {', '.join(duplicates)}", where=str(path))
    return experiments


# --- experiments built from run folders -------------------------------------------------------------

def episodes_from_run(run: RunEpisodes) -> list[Episode]:
    """The comparison's view of a run's finished episodes."""
    return [
        Episode(
            instance=summary.difficulty, seed=summary.seed, num_achievements=summary.num_achievements,
            achievements=list(summary.achievements), reward=summary.reward, steps=summary.steps,
            turns=summary.turns, termination=summary.termination, invalid_actions=summary.invalid_actions,
            prompt_tokens=summary.prompt_tokens, completion_tokens=summary.completion_tokens,
            wall_s=summary.wall_s, run_dir=str(run.run_dir), episode=summary.episode,
        )
        for summary in run.summaries
    ]


def experiment_from_runs(name: str, run_dirs: list[Path], **fields: Any) -> Experiment:
    """An experiment made of existing run folders (model and settings taken from their records)."""
    runs = [read_run(path) for path in run_dirs]
    episodes = [episode for run in runs for episode in episodes_from_run(run)]
    records = [run.record for run in runs if run.record is not None]
    first = records[0] if records else None
    model = fields.pop("model", None) or (first.model if first else None) or (
        runs[0].summaries[0].model if runs and runs[0].summaries else "unknown")
    settings = fields.pop("settings", None)
    if settings is None and first is not None:
        settings = {"max_steps": first.max_steps, "max_turns": first.max_turns,
                    "history_turns": first.history_turns, **first.settings}
    values: dict[str, Any] = {
        "name": name, "model": model, "agent": first.agent if first else None,
        "instances": sorted({e.instance for e in episodes}),
        "seeds": sorted({e.seed for e in episodes if e.seed is not None}),
        "runs": [str(path) for path in run_dirs], "episodes": episodes, "settings": settings or {},
        "git_commit": first.versions.git_commit if first else None,
        "package_version": first.versions.crafter_tui if first else None,
    }
    values.update({k: v for k, v in fields.items() if v is not None})
    try:
        return Experiment.model_validate(values)
    except ValidationError as exc:
        raise _validation_error(exc, f"experiment {name!r}") from None


def file_sha256(path: Path) -> str:
    """Content hash of a training file (streamed: SFT files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_data_for(path: str | None) -> TrainingData | None:
    """TrainingData with the file's hash when the file exists (a missing file keeps the name only)."""
    if not path:
        return None
    file = Path(path)
    return TrainingData(path=path, sha256=file_sha256(file) if file.is_file() else None)


def next_version(versions: list[str]) -> str:
    """v1.0 for the first; otherwise the highest vMAJOR.MINOR with MINOR + 1."""
    parsed = [(int(m.group(1)), int(m.group(2))) for v in versions if (m := _VERSION.match(v))]
    if not parsed:
        return "v1.0"
    major, minor = max(parsed)
    return f"v{major}.{minor + 1}"


class ExperimentRegistry:
    """Registered experiments under ``<data_dir>/experiments/<name>/<version>.json``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "experiments"

    def _dir(self, name: str) -> Path:
        if not re.match(NAME_PATTERN, name):
            raise UserError(f"bad experiment name {name!r}: use letters, digits, '.', '_' or '-'",
                            where="experiment")
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(child.name for child in self.root.iterdir() if child.is_dir() and any(child.glob("*.json")))

    def versions(self, name: str) -> list[Experiment]:
        """Every version of ``name``, oldest first."""
        folder = self._dir(name)
        found = [self._read(path) for path in folder.glob("*.json")] if folder.is_dir() else []
        return sorted(found, key=lambda e: e.created_at)

    def _read(self, path: Path) -> Experiment:
        try:
            return Experiment.model_validate_json(path.read_text(encoding="utf-8")).model_copy(
                update={"source": str(path)})
        except ValidationError as exc:
            raise _validation_error(exc, str(path)) from None

    def load(self, name: str, version: str | None = None) -> Experiment:
        """The latest (or the named) version of an experiment."""
        found = self.versions(name)
        if version is not None:
            found = [e for e in found if e.version == version]
        if not found:
            known = ", ".join(self.names()) or "none registered"
            what = f"{name} {version}" if version else name
            raise UserError(f"no experiment {what!r} (known: {known})", where=str(self.root))
        return found[-1]

    def save(self, experiment: Experiment, *, version: str | None = None) -> Experiment:
        """Register ``experiment``; without an explicit version it gets the next one (v1.0, v1.1, ...)."""
        existing = self.versions(experiment.name)
        label = version or next_version([e.version for e in existing])
        if any(e.version == label for e in existing):
            raise UserError(f"experiment {experiment.name!r} already has version {label}", where="--version")
        saved = experiment.model_copy(update={"version": label, "source": None})
        folder = self._dir(experiment.name)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / f"{label}.json", saved.model_dump(mode="json", exclude={"source"}))
        return saved.model_copy(update={"source": str(folder / f"{label}.json")})


def resolve_experiments(spec: str, registry: ExperimentRegistry) -> list[Experiment]:
    """``--experiments`` value -> experiments: a JSON file, a run/trace folder, or NAME[,NAME...].

    A name may carry a version (``name@v1.1``); a comma list may mix names, files and folders.
    """
    path = Path(spec)
    if path.is_file():
        return load_experiments_file(path)
    if path.is_dir():
        return [_experiment_from_folder(path)]
    experiments: list[Experiment] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        candidate = Path(part)
        if candidate.is_file():
            experiments.extend(load_experiments_file(candidate))
        elif candidate.is_dir():
            experiments.append(_experiment_from_folder(candidate))
        elif candidate.suffix.lower() == ".json":
            raise UserError("no such experiments file", where=part)
        else:
            name, _, version = part.partition("@")
            experiments.append(registry.load(name, version or None))
    return experiments


def _experiment_from_folder(path: Path) -> Experiment:
    """A trace folder (one run or several) as an ad-hoc experiment named after the folder."""
    runs = [path] if is_run_dir(path) else find_run_dirs(path)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().name) or "runs"
    if not re.match(NAME_PATTERN, name):
        name = f"x{name}"[:100]
    return experiment_from_runs(name, runs)
