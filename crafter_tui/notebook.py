"""The notebook API: traces, experiments and comparisons as pandas DataFrames.

    import crafter_tui
    store = crafter_tui.open_store("traces_v2_synth")
    store.episodes().groupby("model").progression.mean()

A user's own analysis starts from these tables, not from the trace file format. The trace
tables are the store's DuckDB tables (``traces/store.py``), handed to pandas by DuckDB in one
columnar transfer (``.df()``), not built row by row; ``arrow()`` gives the same as a pyarrow
Table. Nothing here writes to a trace folder or to the experiment registry.

A front end beside ``cli/`` and ``tui/``: it calls the domain packages and the evaluation
service's ``build_comparison`` (so a notebook's comparison uses the configured custom metrics,
alpha and resamples, exactly as ``crafter-tui compare`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crafter_tui.errors import UserError

if TYPE_CHECKING:  # pandas, DuckDB and the evaluation code load on first use, not with the package
    import pandas as pd
    import pyarrow as pa

    from crafter_tui.evaluation.compare import Comparison
    from crafter_tui.traces.store import RefreshReport, TraceStore

#: Columns of the store's tables a notebook has no use for: an internal bitmask of achievements and
#: the store's line counters (the turn/step numbers say the order).
_HIDDEN = {"episodes": "EXCLUDE (ach_mask)", "turn_index": "EXCLUDE (seq)", "steps": "EXCLUDE (seq)"}
#: table -> ORDER BY; constants, never user input (values are bound as parameters).
_ORDER = {
    "runs": "run_id",
    "episodes": "run_id, episode",
    "turn_index": "run_id, episode, attempt, turn",
    "steps": "run_id, episode, attempt, step",
}


class Store:
    """A trace folder's runs, episodes, turns and steps as DataFrames (read-only).

    ``turns()`` is one light row per turn (actions, validity, new achievements, no texts);
    ``steps()`` reads every run's steps file the first time it is called.
    """

    def __init__(self, store: TraceStore) -> None:
        self.trace_store = store  # the full store: ``cursor()`` for any SQL, ``refresh()``, ``compact()``

    def runs(self) -> pd.DataFrame:
        """One row per run folder (its run.json)."""
        return self._table("runs", None)

    def episodes(self, run: str | None = None) -> pd.DataFrame:
        """One row per finished episode (the last summary of each), with ``progression`` and ``tokens``."""
        return self._table("episodes", run)

    def turns(self, run: str | None = None) -> pd.DataFrame:
        """One row per agent turn: actions, validity, new achievements and where the line is."""
        self.trace_store.ensure_turns()
        return self._table("turn_index", run)

    def steps(self, run: str | None = None) -> pd.DataFrame:
        """One row per environment step: action, reward, new achievements."""
        self.trace_store.ensure_steps()
        return self._table("steps", run)

    def sql(self, query: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Any query over the tables (``runs``, ``episodes``, ``turn_index``, ``steps``); bind values with ``?``."""
        return self.trace_store.cursor().sql(query, params=list(params)).df()

    def arrow(self, query: str, params: Sequence[Any] = ()) -> pa.Table:
        """``sql`` as a pyarrow Table (for polars, or to keep nested columns typed)."""
        relation = self.trace_store.cursor().sql(query, params=list(params))
        # to_arrow_table from DuckDB 1.4 on; older ones call it arrow (which 1.4+ turned into a stream reader).
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()

    def refresh(self) -> RefreshReport:
        """Pick up runs and lines written since the store was opened (a rollout still running)."""
        return self.trace_store.refresh()

    def close(self) -> None:
        self.trace_store.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _table(self, table: str, run: str | None) -> pd.DataFrame:
        if run is not None:
            self.trace_store.run_dir(run)  # an unknown run is a UserError naming the known ones
        query = (f"SELECT * {_HIDDEN.get(table, '')} FROM {table} WHERE ?::VARCHAR IS NULL OR run_id = ? "
                 f"ORDER BY {_ORDER[table]}")
        return self.sql(query, [run, run])


def open_store(trace_dir: str | Path = "traces") -> Store:
    """The run folders under ``trace_dir`` (``traces`` by default, as the rollouts write them)."""
    from crafter_tui.traces.store import TraceStore

    return Store(TraceStore.open(Path(trace_dir)))


def _config(data_dir: str | Path | None):  # type: ignore[no-untyped-def]
    """The configuration as the CLI reads it (./crafter_config.toml, environment), ``data_dir`` on top."""
    from crafter_tui.config import load_config

    flags = {"storage": {"data_dir": str(data_dir)}} if data_dir is not None else None
    return load_config(None, flags=flags)


def experiments(data_dir: str | Path | None = None) -> pd.DataFrame:
    """The registered experiments, one row per version: what was evaluated (model, data, epochs, seeds)."""
    import pandas as pd

    from crafter_tui.evaluation.experiments import ExperimentRegistry

    registry = ExperimentRegistry(_config(data_dir).storage.data_dir)
    rows = [{"name": e.name, "created_at": e.created_at, **e.settings_row()}
            for name in registry.names() for e in registry.versions(name)]
    return pd.DataFrame(rows)


def experiment_episodes(spec: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per episode of the experiments ``spec`` names, as ``compare --experiments`` reads it:
    registered names (``NAME@VERSION``, comma-separated), an experiments.json or a trace folder."""
    import pandas as pd

    rows = [{"experiment": e.name, "version": e.version, "model": e.model, **episode.model_dump()}
            for e in _resolve(spec, data_dir) for episode in e.episodes]
    return pd.DataFrame(rows)


def _resolve(spec: str | Sequence[str], data_dir: str | Path | None) -> list[Any]:
    from crafter_tui.evaluation.experiments import ExperimentRegistry, resolve_experiments

    registry = ExperimentRegistry(_config(data_dir).storage.data_dir)
    return resolve_experiments(spec if isinstance(spec, str) else ",".join(spec), registry)


@dataclass(frozen=True)
class ComparisonFrames:
    """A comparison as tables; ``comparison`` is the full result (the JSON report's model)."""

    comparison: Comparison
    experiments: pd.DataFrame  # one row per experiment: score, progression, achievements per episode
    metrics: pd.DataFrame  # one row per (candidate, metric) against the baseline: difference, CI, p, verdict
    achievements: pd.DataFrame  # one row per (experiment, achievement): successes, rate, CI
    differences: pd.DataFrame  # one row per (candidate, achievement): difference, p (Boschloo, BH)


def compare(spec: str | Sequence[str], *, baseline: str | None = None, metrics: Sequence[str] | None = None,
            seed: int = 0, data_dir: str | Path | None = None) -> ComparisonFrames:
    """Compare experiments (names, files or folders, as ``compare --experiments``) against ``baseline``
    (the first by default) with the configured statistics."""
    from crafter_tui.services.evaluation import build_comparison

    config = _config(data_dir)
    found = _resolve(spec, data_dir)
    return comparison_frames(build_comparison(found, config, baseline=baseline, metrics=metrics, seed=seed))


def load_comparison(path: str | Path) -> ComparisonFrames:
    """A saved comparison (``crafter-tui compare --format json --output FILE``) as tables."""
    from pydantic import ValidationError

    from crafter_tui.evaluation.compare import Comparison

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the comparison: {exc.strerror or exc}", where=where) from None
    try:
        return comparison_frames(Comparison.model_validate_json(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "file"
        raise UserError(f"not a comparison report: {field}: {first['msg']}", where=where) from None


def comparison_frames(comparison: Comparison) -> ComparisonFrames:
    """The tables of a comparison computed here or loaded from its JSON report."""
    import pandas as pd

    summaries = [{
        "experiment": e.name, "version": e.version, "model": e.model, "episodes": e.episodes,
        "crafter_score": e.crafter_score, "progression": e.progression,
        **{f"achievements_{key}": value for key, value in e.achievements.model_dump().items()},
        "baseline": e.name == comparison.baseline,
    } for e in comparison.experiments]
    metric_rows = [{
        "baseline": pair.baseline, "candidate": pair.candidate, **_flat(metric.model_dump()),
    } for pair in comparison.pairs for metric in pair.metrics]
    rates = [{"experiment": e.name, **_flat(rate.model_dump())}
             for e in comparison.experiments for rate in e.success or []]
    differences = [{"baseline": pair.baseline, "candidate": pair.candidate, **row.model_dump()}
                   for pair in comparison.pairs for row in pair.achievements or []]
    return ComparisonFrames(comparison, pd.DataFrame(summaries), pd.DataFrame(metric_rows),
                            pd.DataFrame(rates), pd.DataFrame(differences))


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Nested models (a confidence interval) as ``ci_low``-style columns."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat
