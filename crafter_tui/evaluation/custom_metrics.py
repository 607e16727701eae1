"""User metric functions, named in the config (``[evaluation] custom_metrics``).

A spec is either ``path/to/file.py:function`` or the name of an entry point in the group
``crafter_tui.metrics``. The function receives an experiment's episodes (a list of
``evaluation.experiments.Episode``) and returns:

- a list of numbers, one per episode -> compared like the built-in metrics (tests, CIs);
- a number -> shown per experiment (and its difference to the baseline);
- a dict of name -> number -> several such numbers.

Errors in loading or in the function's result name the spec, so a typo in the config
does not surface as a traceback in the middle of a report.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from crafter_tui.errors import UserError

ENTRY_POINT_GROUP = "crafter_tui.metrics"


@dataclass(frozen=True, slots=True)
class CustomMetric:
    """A loaded user metric: its display name, the spec it came from and the function."""

    name: str
    spec: str
    function: Callable[[list[Any]], Any]
    higher_is_better: bool | None = None


@dataclass(slots=True)
class CustomResult:
    """What one custom metric gave for one experiment."""

    per_episode: list[float] | None  # aligned with the experiment's episodes
    scalars: dict[str, float]


def load_custom_metric(spec: str) -> CustomMetric:
    """Load ``file.py:function`` or an entry point of the ``crafter_tui.metrics`` group."""
    where = f"[evaluation] custom_metrics: {spec!r}"
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        file_name, _, function_name = spec.rpartition(":")
        function = _function_from_file(Path(file_name), function_name, where)
        name = function_name
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not matches:
            raise UserError(f"no such file.py:function and no entry point {spec!r} in group {ENTRY_POINT_GROUP}",
                            where=where)
        try:
            function = matches[0].load()
        except Exception as exc:  # noqa: BLE001 - any import error of user code is reported the same way
            raise UserError(f"could not load entry point: {exc.__class__.__name__}: {exc}", where=where) from None
        name = spec
    if not callable(function):
        raise UserError("is not a function", where=where)
    higher = getattr(function, "higher_is_better", None)
    return CustomMetric(name=name, spec=spec, function=function,
                        higher_is_better=higher if isinstance(higher, bool) else None)


def _function_from_file(path: Path, function_name: str, where: str) -> Callable[[list[Any]], Any]:
    if not path.is_file():
        raise UserError(f"no such file {str(path)!r}", where=where)
    module_name = f"crafter_tui_custom_metric_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UserError("not a loadable Python file", where=where)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"importing the file failed: {exc.__class__.__name__}: {exc}", where=where) from None
    if not hasattr(module, function_name):
        raise UserError(f"the file has no function {function_name!r}", where=where)
    return getattr(module, function_name)


def load_custom_metrics(specs: Sequence[str]) -> list[CustomMetric]:
    """Every configured metric, names unique (a later duplicate is an error)."""
    metrics = [load_custom_metric(spec) for spec in specs]
    names = [m.name for m in metrics]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"two custom metrics are called {name!r}", where="[evaluation] custom_metrics")
    return metrics


def evaluate_custom_metric(metric: CustomMetric, episodes: list[Any]) -> CustomResult:
    """Call the user function and check the shape of what it returned."""
    where = f"custom metric {metric.name!r} ({metric.spec})"
    try:
        value = metric.function(list(episodes))
    except Exception as exc:  # noqa: BLE001 - user code: report, don't crash the comparison
        raise UserError(f"raised {exc.__class__.__name__}: {exc}", where=where) from None
    if isinstance(value, dict):
        return CustomResult(per_episode=None, scalars={
            f"{metric.name}.{key}": _number(item, f"{where}[{key!r}]") for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        if len(value) != len(episodes):
            raise UserError(f"returned {len(value)} values for {len(episodes)} episodes", where=where)
        return CustomResult(per_episode=[_number(item, f"{where}[{i}]") for i, item in enumerate(value)], scalars={})
    return CustomResult(per_episode=None, scalars={metric.name: _number(value, where)})


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"returned {type(value).__name__}, expected a number", where=where)
    number = float(value)
    if math.isnan(number):
        raise UserError("returned NaN", where=where)
    return number
