"""The async service layer the filter screen calls: supersedable stats, export events, validation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from crafter_tui.dataset import export as export_module
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.services.dataset import DatasetService, ExportDone, ExportProgress, StatsSuperseded
from crafter_tui.services.traces import TraceService
from tests.trace_builders import small_store


@pytest.fixture
async def services(tmp_path: Path) -> tuple[TraceService, DatasetService]:
    traces = TraceService()
    await traces.open(small_store(tmp_path / "t"))
    yield traces, DatasetService(traces)
    traces.close()


async def test_stats_follow_thresholds(services: tuple[TraceService, DatasetService]) -> None:
    _, dataset = services
    counts = [(await dataset.stats(FilterSpec(min_achievements=n))).episodes_selected for n in range(4)]
    assert counts == [6, 4, 2, 0]
    full = await dataset.stats(FilterSpec(keep_before_achievement=1), turn_level=True, tokens=True)
    assert full.examples_selected == 5 and full.tokens is not None and full.tokens.method == "exact"


async def test_a_newer_stats_call_supersedes_a_running_one(services: tuple[TraceService, DatasetService],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, dataset = services
    started = threading.Event()
    from crafter_tui.services import dataset as service_module
    real = service_module.selection_stats

    def slow_first(store, spec, **kwargs):  # noqa: ANN001, ANN003 - test double around the real function
        if spec.min_achievements == 1:
            started.set()
            kwargs["cursor"].execute("SELECT count(*) FROM range(100000000000)")  # runs until interrupted
        return real(store, spec, **kwargs)

    monkeypatch.setattr(service_module, "selection_stats", slow_first)
    first = asyncio.create_task(dataset.stats(FilterSpec(min_achievements=1)))
    await asyncio.to_thread(started.wait, 10)
    await asyncio.sleep(0.2)  # usually running by now; if not, the service keeps interrupting until it is
    second = asyncio.create_task(dataset.stats(FilterSpec(min_achievements=2)))
    with pytest.raises(StatsSuperseded):
        await asyncio.wait_for(first, 30)
    assert (await asyncio.wait_for(second, 30)).episodes_selected == 2


async def test_export_yields_progress_then_done(services: tuple[TraceService, DatasetService], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, dataset = services
    monkeypatch.setattr(export_module, "PROGRESS_EVERY", 5)
    events = [event async for event in dataset.export(FilterSpec(), tmp_path / "o.jsonl")]
    progress = [e for e in events if isinstance(e, ExportProgress)]
    assert [p.written for p in progress] == [5, 10, 15, 17] and all(p.total == 17 for p in progress)
    assert isinstance(events[-1], ExportDone) and events[-1].result.examples == 17
    report = await dataset.validate(tmp_path / "o.jsonl")
    assert report.ok and report.examples == 17


async def test_refresh_and_run_listing(services: tuple[TraceService, DatasetService]) -> None:
    traces, _ = services
    assert (await traces.refresh()).new_episode_lines == 0
    runs = await traces.list_runs()
    assert [r.run_id for r in runs] == ["run-a", "run-b"]
    detail = await traces.show_run("run-a")
    assert [e["episode"] for e in detail.episodes] == [0, 1, 2] and detail.history_turns == 2
