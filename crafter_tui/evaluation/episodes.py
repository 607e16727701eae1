"""Reading a run folder's finished episodes (and their steps/turns) for evaluation.

The one reader the evaluation package uses. It keeps the trace format's attempt rule: an
episode rerun after a crash has several attempts in steps.jsonl/turns.jsonl, and only the
lines of the attempt its summary names count. Bad lines are skipped and reported with the
file and line, never fatal: one torn line must not lose a whole experiment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import LineProblem, iter_jsonl
from crafter_tui.traces.schema import (
    EPISODES_FILE,
    RUN_FILE,
    STEPS_FILE,
    TURNS_FILE,
    EpisodeSummary,
    RunRecord,
    StepRecord,
    TurnRecord,
)


@dataclass(slots=True)
class RunEpisodes:
    """One run folder's finished episodes, with the detail lines that count (loaded on demand)."""

    run_dir: Path
    record: RunRecord | None
    summaries: list[EpisodeSummary]
    problems: list[LineProblem] = field(default_factory=list)
    _steps: dict[int, list[StepRecord]] | None = None
    _turns: dict[int, list[TurnRecord]] | None = None

    def steps(self) -> dict[int, list[StepRecord]]:
        """Episode index -> its steps (the counted attempt only), in step order."""
        if self._steps is None:
            self._steps = _detail_lines(self.run_dir / STEPS_FILE, StepRecord, self.summaries, self.problems)
        return self._steps

    def turns(self) -> dict[int, list[TurnRecord]]:
        """Episode index -> its turns (the counted attempt only), in turn order."""
        if self._turns is None:
            self._turns = _detail_lines(self.run_dir / TURNS_FILE, TurnRecord, self.summaries, self.problems)
        return self._turns


def is_run_dir(path: Path) -> bool:
    """A run folder has a run record or an episodes file."""
    return path.is_dir() and ((path / RUN_FILE).is_file() or (path / EPISODES_FILE).is_file())


def find_run_dirs(root: Path) -> list[Path]:
    """``root`` itself when it is a run folder, else its run-folder children (sorted)."""
    if not root.exists():
        raise UserError("no such trace folder", where=str(root))
    if is_run_dir(root):
        return [root]
    runs = sorted(child for child in root.iterdir() if is_run_dir(child))
    if not runs:
        raise UserError("no run folders (run.json / episodes.jsonl) found", where=str(root))
    return runs


def read_run(run_dir: Path) -> RunEpisodes:
    """Read a run folder's record and finished episode summaries (the last summary of an episode wins)."""
    problems: list[LineProblem] = []
    record: RunRecord | None = None
    record_path = run_dir / RUN_FILE
    if record_path.is_file():
        try:
            record = RunRecord.model_validate_json(record_path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            problems.append(LineProblem(record_path, 1, f"bad run record: {_first_error(exc)}"))
    by_episode: dict[int, EpisodeSummary] = {}
    path = run_dir / EPISODES_FILE
    for raw, number in _numbered(path, problems):
        try:
            summary = EpisodeSummary.model_validate(raw)
        except ValidationError as exc:
            problems.append(LineProblem(path, number, f"bad episode summary: {_first_error(exc)}"))
            continue
        by_episode[summary.episode] = summary
    summaries = [by_episode[key] for key in sorted(by_episode)]
    return RunEpisodes(run_dir=run_dir, record=record, summaries=summaries, problems=problems)


def read_runs(paths: Iterable[Path]) -> list[RunEpisodes]:
    """Every run under each path (a run folder or a folder of run folders)."""
    runs: list[RunEpisodes] = []
    for path in paths:
        runs.extend(read_run(run_dir) for run_dir in find_run_dirs(path))
    return runs


def _detail_lines(path: Path, model: type, summaries: list[EpisodeSummary],
                  problems: list[LineProblem]) -> dict:
    """Lines of ``path`` grouped by episode, keeping only the attempt each summary names."""
    counted = {summary.episode: summary.attempt for summary in summaries}
    grouped: dict[int, list] = defaultdict(list)
    for raw, number in _numbered(path, problems):
        episode, attempt = raw.get("episode"), raw.get("attempt", 0)
        if episode not in counted or attempt != counted[episode]:
            continue
        try:
            grouped[episode].append(model.model_validate(raw))
        except ValidationError as exc:
            problems.append(LineProblem(path, number, f"bad {model.__name__}: {_first_error(exc)}"))
    order = "step" if model is StepRecord else "turn"
    return {episode: sorted(lines, key=lambda line: getattr(line, order)) for episode, lines in grouped.items()}


def _numbered(path: Path, problems: list[LineProblem]) -> Iterator[tuple[dict, int]]:
    """The file's records with their line numbers: records so far plus the unreadable lines the
    reader reported before them (exact unless the file has blank lines, which are skipped silently)."""
    unreadable: list[LineProblem] = []
    count = 0
    try:
        for raw in iter_jsonl(path, problems=unreadable):
            count += 1
            yield raw, count + len(unreadable)
    finally:
        problems.extend(unreadable)


def _first_error(exc: Exception) -> str:
    """The first pydantic error as 'field: message' (or the exception text)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(record)"
        return f"{where}: {first['msg']}"
    return str(exc)
