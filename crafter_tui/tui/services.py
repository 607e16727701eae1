"""The console's services, typed: one lazily built property per service.

Each property imports and builds its service on first use (DuckDB, the trainer client or SciPy cost a
second or more to import, which must not delay the first paint); ``CrafterApp.aservice`` builds one in a
thread for screens that ask from the event loop. Screens reach them as ``self.services.runs`` etc. (typed),
never by a string looked up into ``object``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from crafter_tui.config import AppConfig

if TYPE_CHECKING:
    from crafter_tui.services.dataset import DatasetService
    from crafter_tui.services.evaluation import EvaluationService
    from crafter_tui.services.finetune import FinetuneService
    from crafter_tui.services.rollouts import RolloutService
    from crafter_tui.services.runs import RunsService
    from crafter_tui.services.traces import TraceService

T = TypeVar("T")
NAMES = ("runs", "rollouts", "traces", "dataset", "finetune", "evaluation")


class Services:
    """Every service of the console, each built once, on first use, from the console's config."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._built: dict[str, object] = {}
        self._lock = threading.RLock()  # built from worker threads too (``aservice``)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]  # type: ignore[return-value]

    def is_built(self, name: str) -> bool:
        return name in self._built

    def get(self, name: str) -> object:
        """The service ``name`` (one of ``NAMES``), for code that picks a service by name."""
        if name not in NAMES:
            raise KeyError(f"no service named {name!r}")
        return getattr(self, name)

    @property
    def runs(self) -> RunsService:
        from crafter_tui.services.runs import RunsService

        return self._once("runs", lambda: RunsService(self.config))

    @property
    def rollouts(self) -> RolloutService:
        from crafter_tui.services.rollouts import RolloutService

        return self._once("rollouts", lambda: RolloutService(self.config))

    @property
    def traces(self) -> TraceService:
        from crafter_tui.services.traces import TraceService

        return self._once("traces", lambda: TraceService(self.config))

    @property
    def dataset(self) -> DatasetService:
        from crafter_tui.services.dataset import DatasetService

        return self._once("dataset", lambda: DatasetService(self.traces))

    @property
    def finetune(self) -> FinetuneService:
        from crafter_tui.services.finetune import FinetuneService

        # never started silently from the console: the Jobs screen offers to start it (and stops it on quit)
        return self._once("finetune", lambda: FinetuneService(self.config, autostart_local=False))

    @property
    def evaluation(self) -> EvaluationService:
        from crafter_tui.services.evaluation import EvaluationService

        return self._once("evaluation", lambda: EvaluationService(self.config))

    def close(self) -> None:
        """Close what holds resources (the trace store's DuckDB connection)."""
        traces = self._built.get("traces")
        if traces is not None:
            traces.close()  # type: ignore[attr-defined]
