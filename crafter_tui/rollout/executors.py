"""Scale-out executors: episodes in local worker processes (``--workers N``) or Modal containers (``--on modal``).

Both share one shape: somewhere else, ``play_jobs`` plays whole episodes (world + agent) with
the same ``play_episode`` loop as in-process, and turns everything the episode produced into
*messages* — plain ``(kind, payload)`` tuples in the trace schema's dict shapes. Messages come
back to this process, where ``deliver`` hands them to the run's one ``RunSink`` (the only trace
writer). So a worker never touches a file and the traces are the same records as one process.

If a worker process dies or a Modal block fails, the episodes it had not finished still get a
summary (termination ``env_error`` with the reason, counted from the records that did arrive),
so the run completes and nothing that finished is lost.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from multiprocessing import connection
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from crafter_tui.config import AppConfig
from crafter_tui.rollout.episode import EpisodeJob, play_jobs
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.traces.schema import EpisodeSummary
from crafter_tui.world.rules import ACHIEVEMENTS

Message = tuple[str, Any]
#: The deployed Modal app ``ModalExecutor`` maps over; ``rollout/modal_app.py`` defines it under this name.
APP_NAME = "crafter-tui-rollouts"
FLUSH_RECORDS = 256
FLUSH_SECONDS = 0.05
#: Imported once by the forkserver so each worker starts with the game and agents loaded.
WORKER_PRELOAD = ["crafter_tui.rollout.executors", "crafter_tui.rollout.runner", "crafter_tui.agents.scripted",
                  "crafter_tui.agents.random_agent", "crafter_tui.agents.openai_agent",
                  "crafter_tui.rollout.worker_warmup"]


def run_worker_loop(coro: Any) -> Any:
    """Run ``coro`` on a fresh event loop: uvloop's where installed, else asyncio's.

    A worker's loop does nothing but play episodes, so the faster loop (cheaper socket I/O and
    callbacks, which matter when an LLM agent makes hundreds of HTTP calls per second) has no
    host program to disagree with.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where the platform has it
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# -- the remote side: play jobs, emit messages ---------------------------------------------------------

class MessageSink:
    """A ``RecordSink`` that turns records into messages and flushes them in batches."""

    def __init__(self, flush: Callable[[list[Message]], None]) -> None:
        self._flush = flush
        self._buffer: list[Message] = []
        self._last = time.monotonic()

    def emit(self, kind: str, payload: Any, *, now: bool = False) -> None:
        self._buffer.append((kind, payload))
        if now or len(self._buffer) >= FLUSH_RECORDS or time.monotonic() - self._last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._flush(batch)
        self._last = time.monotonic()

    def step(self, record: dict[str, Any]) -> None:
        self.emit("step", record)

    def turn(self, record: dict[str, Any]) -> None:
        self.emit("turn", record)

    def started(self, job: EpisodeJob) -> None:
        self.emit("started", (job.episode, job.seed, job.attempt), now=True)

    def episode(self, summary: EpisodeSummary) -> None:
        self.emit("episode", summary.model_dump(mode="json"), now=True)

    def progress(self, episode: int, seed: int, step: int, turn: int, achievements: int) -> None:
        self.emit("progress", (episode, seed, step, turn, achievements))


def play_block(spec_data: dict[str, Any], config_data: dict[str, Any], run_id: str,
               jobs: list[tuple[Any, ...]], lanes: int) -> list[Message]:
    """Play a block of episodes to the end and return all their messages (the Modal function body)."""
    spec = RolloutSpec.model_validate(spec_data)
    config = AppConfig.model_validate(config_data)
    messages: list[Message] = []
    sink = MessageSink(messages.extend)
    asyncio.run(play_jobs(spec, config, [EpisodeJob(*job) for job in jobs], run_id, sink, lanes))
    sink.flush()
    return messages


# -- the local side: deliver messages, account for lost episodes -------------------------------------------

@dataclass
class _Progress:
    """What arrived for one started episode (enough to summarise it if its worker is lost)."""

    job: EpisodeJob
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    steps: int = 0
    turns: int = 0
    reward: float = 0.0
    unlocked: set[str] = field(default_factory=set)


class Delivery:
    """Feeds messages to the run's sink and remembers which episodes are still open."""

    def __init__(self, sink: Any, spec: RolloutSpec, run_id: str) -> None:
        self.sink = sink
        self.spec = spec
        self.run_id = run_id
        self.open: dict[int, _Progress] = {}
        self.finished: set[int] = set()

    def deliver(self, messages: Iterable[Message]) -> None:
        for kind, payload in messages:
            getattr(self, f"_on_{kind}")(payload)

    def _on_started(self, payload: tuple[int, int, int]) -> None:
        job = EpisodeJob(*payload)
        self.open[job.episode] = _Progress(job)
        self.sink.started(job)

    def _on_step(self, record: dict[str, Any]) -> None:
        progress = self.open.get(record["episode"])
        if progress is not None:
            progress.steps = record["step"]
            progress.reward += record["reward"]
            progress.unlocked.update(record["new_achievements"])
        self.sink.step(record)

    def _on_turn(self, record: dict[str, Any]) -> None:
        progress = self.open.get(record["episode"])
        if progress is not None:
            progress.turns = record["turn"] + 1
        self.sink.turn(record)

    def _on_progress(self, payload: tuple[int, int, int, int, int]) -> None:
        self.sink.progress(*payload)

    def _on_episode(self, data: dict[str, Any]) -> None:
        summary = EpisodeSummary.model_validate(data)
        self.open.pop(summary.episode, None)
        self.finished.add(summary.episode)
        self.sink.episode(summary)

    def fail(self, jobs: Iterable[EpisodeJob], reason: str) -> None:
        """End every unfinished episode of ``jobs`` with ``env_error`` and ``reason``."""
        for job in jobs:
            if job.episode in self.finished:
                continue
            progress = self.open.pop(job.episode, None)
            if progress is None:
                progress = _Progress(job)
                self.sink.started(job)
            now = datetime.now(timezone.utc)
            self.finished.add(job.episode)
            self.sink.episode(EpisodeSummary(
                episode=job.episode, seed=job.seed, attempt=job.attempt, run_id=self.run_id,
                agent=self.spec.agent, model=self.spec.model, difficulty=self.spec.difficulty,
                steps=progress.steps, turns=progress.turns, reward=round(progress.reward, 6),
                achievements=[a for a in ACHIEVEMENTS if a in progress.unlocked],
                num_achievements=len(progress.unlocked), termination="env_error", error=reason,
                started_at=progress.started_at, finished_at=now,
                wall_s=round((now - progress.started_at).total_seconds(), 4)))


def job_tuple(job: EpisodeJob) -> tuple[Any, ...]:
    """A job as it travels to a worker process or container (``EpisodeJob(*values)`` there)."""
    return job.episode, job.seed, job.attempt, job.replay


def partition(jobs: list[EpisodeJob], parts: int) -> list[list[EpisodeJob]]:
    """Round-robin blocks (episode i goes to block i mod parts), dropping empty blocks."""
    blocks = [jobs[i::parts] for i in range(max(1, parts))]
    return [block for block in blocks if block]


# -- local worker processes -----------------------------------------------------------------------------

def _worker_main(index: int, spec_data: dict[str, Any], config_data: dict[str, Any], run_id: str,
                 jobs: list[tuple[Any, ...]], lanes: int, out: Any) -> None:
    """Entry point of a worker process: play the jobs, stream message batches to the parent."""
    error = None
    try:
        spec = RolloutSpec.model_validate(spec_data)
        config = AppConfig.model_validate(config_data)
        sink = MessageSink(lambda batch: out.send(("batch", batch)))
        run_worker_loop(play_jobs(spec, config, [EpisodeJob(*job) for job in jobs], run_id, sink, lanes))
        sink.flush()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the open episodes
        error = f"{exc.__class__.__name__}: {exc}"
    out.send(("exit", (index, error)))
    out.close()


def dump_config(config: AppConfig) -> dict[str, Any]:
    """The config as plain data *with* secret values: it only travels to our own workers/containers."""
    data = config.model_dump(mode="python")

    def reveal(value: Any) -> Any:
        if hasattr(value, "get_secret_value"):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    return reveal(data)


class ProcessPoolExecutor:
    """``--workers N``: N local processes, each playing whole episodes for its block of seeds."""

    def __init__(self, workers: int, *, start_method: str = "forkserver") -> None:
        self.workers = workers
        self.start_method = start_method

    def _context(self) -> Any:
        """``forkserver``: workers fork from a clean server process that imported the game once,
        so they start in milliseconds without inheriting this process's threads (uvicorn, the TUI)."""
        ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(WORKER_PRELOAD)
        return ctx

    async def run(self, spec: RolloutSpec, config: AppConfig, jobs: list[EpisodeJob],
                  run_id: str, sink: Any) -> None:
        blocks = partition(jobs, self.workers)
        if not blocks:
            return
        ctx = self._context()
        lanes = max(1, spec.concurrency // len(blocks))
        spec_data, config_data = spec.model_dump(mode="json"), dump_config(config)
        # One pipe per worker, not a shared Queue: a worker killed mid-write would leave a shared
        # queue's lock held (the other workers block forever) or a torn message in the one stream.
        pipes = [ctx.Pipe(duplex=False) for _ in blocks]
        procs = [ctx.Process(target=_worker_main, name=f"crafter-worker-{i}", daemon=True,
                             args=(i, spec_data, config_data, run_id, [job_tuple(j) for j in block],
                                   lanes, pipes[i][1])) for i, block in enumerate(blocks)]
        for proc in procs:
            proc.start()
        for _, writer in pipes:
            writer.close()  # the worker holds the only write end: its death reads as end of file
        delivery = Delivery(sink, spec, run_id)
        try:
            await self._pump([reader for reader, _ in pipes], procs, blocks, delivery)
            delivery.fail(jobs, "its worker process ended without finishing it")  # safety net: no-op normally
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join(timeout=5)
            for reader, _ in pipes:
                reader.close()

    async def _pump(self, readers: list[Any], procs: list[Any], blocks: list[list[EpisodeJob]],
                    delivery: Delivery) -> None:
        """Deliver batches until every worker's pipe has closed; a worker that died has its open episodes failed."""
        loop = asyncio.get_running_loop()
        alive = set(range(len(procs)))
        open_readers = {reader: index for index, reader in enumerate(readers)}
        while open_readers:
            ready = await loop.run_in_executor(None, connection.wait, list(open_readers), 0.5)
            for reader in ready:
                if not self._read_all(reader, open_readers[reader], delivery, alive, blocks):
                    index = open_readers.pop(reader)
                    if index in alive:  # it died before its "exit" message
                        procs[index].join(timeout=5)
                        alive.discard(index)
                        delivery.fail(blocks[index], f"worker process {procs[index].name} died "
                                                     f"(exit code {procs[index].exitcode})")

    def _read_all(self, reader: Any, index: int, delivery: Delivery, alive: set[int],
                  blocks: list[list[EpisodeJob]]) -> bool:
        """Handle every message waiting in one worker's pipe (one wake-up per burst, not per message);
        False once the pipe reads as closed: the worker exited, or was killed."""
        while True:
            try:
                kind, payload = reader.recv()
            except (EOFError, OSError):
                return False
            self._handle(kind, payload, delivery, alive, blocks)
            if not reader.poll():
                return True

    @staticmethod
    def _handle(kind: str, payload: Any, delivery: Delivery, alive: set[int], blocks: list[list[EpisodeJob]]) -> None:
        if kind == "batch":
            delivery.deliver(payload)
            return
        index, error = payload
        alive.discard(index)
        if error is not None:
            delivery.fail(blocks[index], f"worker process failed: {error}")



# -- Modal ---------------------------------------------------------------------------------------------

MapFunction = Callable[[list[tuple[Any, ...]]], AsyncIterator[Any]]


class ModalExecutor:
    """``--on modal``: ``Function.map`` over blocks of seeds; each container plays world + agent.

    ``map_fn`` receives the argument tuples (one per block) and yields, in input order, each
    block's message list or the exception that block raised (``return_exceptions``). The default maps over the
    deployed app's ``play_block`` (see ``rollout/modal_app.py``); tests inject a fake.
    """

    def __init__(self, *, block_size: int = 4, map_fn: MapFunction | None = None) -> None:
        self.block_size = block_size
        self.map_fn = map_fn

    async def run(self, spec: RolloutSpec, config: AppConfig, jobs: list[EpisodeJob],
                  run_id: str, sink: Any) -> None:
        blocks = [jobs[i:i + self.block_size] for i in range(0, len(jobs), self.block_size)]
        if not blocks:
            return
        spec_data = spec.model_copy(update={"on": "local", "workers": 1}).model_dump(mode="json")
        config_data = dump_config(config)
        lanes = max(1, min(spec.concurrency, self.block_size))
        inputs = [(spec_data, config_data, run_id, [job_tuple(j) for j in block], lanes)
                  for block in blocks]
        delivery = Delivery(sink, spec, run_id)
        map_fn = self.map_fn or default_modal_map
        index = 0
        try:
            async for result in map_fn(inputs):
                if isinstance(result, BaseException):
                    delivery.fail(blocks[index], f"modal: {result.__class__.__name__}: {result}")
                else:
                    delivery.deliver(result)
                index += 1
        except Exception as exc:  # noqa: BLE001 - a Modal failure ends the affected episodes, not the run
            delivery.fail([job for block in blocks[index:] for job in block], f"modal: {exc.__class__.__name__}: {exc}")
            return
        # a block that returned without some of its episodes (should not happen) still ends them
        delivery.fail([job for block in blocks for job in block], "modal: no result came back for this episode")


async def default_modal_map(inputs: list[tuple[Any, ...]]) -> AsyncIterator[Any]:
    """Map over the deployed ``play_block`` (``modal deploy -m crafter_tui.rollout.modal_app``)."""
    import modal

    function = modal.Function.from_name(APP_NAME, "play_block_remote")
    async for result in function.starmap.aio(inputs, order_outputs=True, return_exceptions=True):
        yield result


def executor_for(spec: RolloutSpec) -> ProcessPoolExecutor | ModalExecutor:
    """The executor the spec asks for (the runner's ``pick_executor`` calls this)."""
    if spec.on == "modal":
        return ModalExecutor()
    return ProcessPoolExecutor(spec.workers)
