"""Fine-tune jobs as a service both front ends call: launch, list, follow, cancel, test.

Every job we launch is in the local registry with its host, so ``list_jobs`` covers OpenAI,
Synth, Modal and our own service at once, each refreshed from its host (a host that cannot be
reached shows its last known state and the reason). ``watch`` yields typed progress events;
it polls one request at a time (the next poll is scheduled after the last one finished), and
fetches only new events. The blocking SDK calls run in threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from crafter_tui.agents.prompting import TOOLS
from crafter_tui.config import AppConfig
from crafter_tui.dataset.card import CARD_METADATA_KEY, ModelCard, Sampling
from crafter_tui.errors import UserError
from crafter_tui.finetune.client import (
    CheckpointInfo,
    FineTuneClient,
    JobEvent,
    JobInfo,
    JobSpec,
    MetricPoint,
    metrics_from_events,
)
from crafter_tui.finetune.hosts import Host, host_from_config
from crafter_tui.finetune.model_test import ModelTestReport, ObservationCheck, check_reply, crafter_turns, usage_example
from crafter_tui.finetune.prepare import PreparedData, PrepareRequest, prepare_dataset
from crafter_tui.finetune.registry import JobEntry, JobNotFound, JobRegistry


MODAL_SERVING_HINT = (
    "Modal-trained weights are served by the Modal app's 'serve' function: deploy it with 'modal deploy "
    "crafter_tui/finetune/modal_app.py' (after 'modal secret create crafter-tui-serve "
    "CRAFTER_TUI_SERVE_TOKEN=...') and set [finetune] modal_serve_url (or CRAFTER_TUI_MODAL_SERVE_URL) to the URL "
    "it prints and modal_serve_token (CRAFTER_TUI_MODAL_SERVE_TOKEN) to the token. Or fetch them with "
    "'modal volume get crafter-tui-finetune "
    "jobs/<job-id>/out/model DIR', put DIR under <data_dir>/service/models/ with the line '{model}' in "
    "DIR/served_name.txt, and the local service serves it (then test with --backend local)")


class LaunchRequest(PrepareRequest):
    """``finetune``'s inputs (the data preparation ones plus the hyperparameters)."""

    batch_size: int | None = Field(None, ge=1, le=4096)
    learning_rate: float | None = Field(None, gt=0)
    learning_rate_multiplier: float | None = Field(None, gt=0)
    suffix: str | None = Field(None, max_length=64)
    lora_r: int | None = Field(None, ge=1)
    lora_alpha: int | None = Field(None, ge=1)
    lora_dropout: float | None = Field(None, ge=0, lt=1)
    use_qlora: bool | None = None
    sampling: Sampling | None = Field(None, description="the sampling the model is meant to be played with "
                                      "(recorded on its card)")


class JobRow(BaseModel):
    """One line of ``jobs list``: the registry entry refreshed from its host (or why it could not be),
    or a job from a host's own list that crafter-tui did not launch (``entry.external``)."""

    entry: JobEntry
    info: JobInfo | None = None
    problem: str | None = None

    @property
    def launched_here(self) -> bool:
        return not self.entry.external

    @property
    def status(self) -> str:
        return self.info.status if self.info else self.entry.status


class JobDetail(BaseModel):
    entry: JobEntry
    info: JobInfo
    metrics: list[MetricPoint]
    checkpoints: list[CheckpointInfo]
    events: list[JobEvent]


# -- progress events (what watch yields) -------------------------------------------------------
class JobStatusChanged(BaseModel):
    kind: Literal["status"] = "status"
    job_id: str
    status: str
    info: JobInfo


class JobMessage(BaseModel):
    kind: Literal["message"] = "message"
    job_id: str
    event: JobEvent


class JobMetrics(BaseModel):
    kind: Literal["metrics"] = "metrics"
    job_id: str
    point: MetricPoint


class JobFinished(BaseModel):
    kind: Literal["finished"] = "finished"
    job_id: str
    info: JobInfo


FinetuneEvent = JobStatusChanged | JobMessage | JobMetrics | JobFinished


class FinetuneService:
    """The fine-tune stage for the CLI and the console."""

    def __init__(self, config: AppConfig, *, registry: JobRegistry | None = None,
                 modal_host: Any = None, clock: Callable[[float], Any] = asyncio.sleep,
                 autostart_local: bool = True) -> None:
        self.config = config
        self.autostart_local = autostart_local
        self.registry = registry or JobRegistry.from_data_dir(config.storage.data_dir)
        self._modal = modal_host
        self._sleep = clock
        self._clients: dict[str, FineTuneClient] = {}
        self.host_problems: dict[str, str] = {}  # host -> why its own job list could not be read (last list)
        self.started_service: str | None = None  # the local service's URL when this object started it

    # -- hosts --------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return host_from_config(name, self.config)

    def client(self, name: str) -> FineTuneClient:
        """The protocol client for host ``name`` (one per host, reused). Blocking: call from a thread.

        The local service is started first when nothing answers at ``[finetune] local_url``."""
        if name == "modal":
            raise UserError("Modal jobs are not reached through the fine-tuning protocol", where="modal")
        if name not in self._clients:
            if name == "local" and self.autostart_local:
                from crafter_tui.finetune.local_service import ensure_local_service

                url, started = ensure_local_service(self.config)  # started for the user, reused by later commands
                if started:
                    self.started_service = url  # the front end says so
            self._clients[name] = FineTuneClient(self.host(name), max_retries=self.config.openai.max_retries,
                                                 timeout=self.config.openai.timeout)
        return self._clients[name]

    async def client_async(self, name: str) -> FineTuneClient:
        return await asyncio.to_thread(self.client, name)

    def job_client(self, entry: JobEntry) -> FineTuneClient:
        """The protocol client for the host a job was created on, at the URL it was created at: a host
        whose configured URL has moved since still answers for the jobs it ran. Blocking."""
        host = self.host(entry.host)
        if not entry.base_url or host.base_url == entry.base_url:
            return self.client(entry.host)
        key = f"{entry.host} at {entry.base_url}"
        if key not in self._clients:
            self._clients[key] = FineTuneClient(host.model_copy(update={"base_url": entry.base_url}),
                                                max_retries=self.config.openai.max_retries,
                                                timeout=self.config.openai.timeout)
        return self._clients[key]

    def modal(self) -> Any:
        if self._modal is None:
            from crafter_tui.finetune.modal_host import ModalHost  # imports modal only when needed

            self._modal = ModalHost(self.config)
        return self._modal

    async def ensure_local_service(self) -> tuple[str, bool]:
        from crafter_tui.finetune.local_service import ensure_local_service

        return await asyncio.to_thread(ensure_local_service, self.config)

    # -- launch -------------------------------------------------------------------------------
    async def prepare(self, request: LaunchRequest) -> PreparedData:
        """Subset/split, validate (raises ``DatasetRejected`` with line numbers) and estimate."""
        return await asyncio.to_thread(prepare_dataset, request)

    async def launch(self, request: LaunchRequest, prepared: PreparedData) -> JobEntry:
        """Upload and create the job on its host; record it in the registry."""
        self.host(request.backend).refuse_qlora(request.use_qlora)  # before anything is uploaded or started
        spec_fields = request.model_dump(include={"model", "batch_size", "learning_rate", "learning_rate_multiplier",
                                                  "suffix", "lora_r", "lora_alpha", "lora_dropout", "use_qlora"})
        spec_fields["n_epochs"] = prepared.estimate.epochs if request.epochs else None
        spec_fields["seed"] = request.seed
        card = launch_card(request, prepared)
        if card is not None and request.backend == "local":  # our service keeps it with the job and its model
            spec_fields["metadata"] = {CARD_METADATA_KEY: card.model_dump_json()}
        if request.backend == "modal":
            spec = JobSpec(training_file="(volume)", **spec_fields)
            entry = await asyncio.to_thread(self.modal().launch, prepared.train_path, spec, prepared.validation_path)
            entry.card = card
        else:
            if request.backend == "local":
                await self.ensure_local_service()
            client = await self.client_async(request.backend)
            client.create_arguments(JobSpec(training_file="(checked before upload)", **spec_fields))
            training_id = await asyncio.to_thread(client.upload, prepared.train_path)
            validation_id = (await asyncio.to_thread(client.upload, prepared.validation_path)
                             if prepared.validation_path else None)
            spec = JobSpec(training_file=training_id, validation_file=validation_id, **spec_fields)
            info = await asyncio.to_thread(client.create, spec)
            entry = JobEntry(job_id=info.id, host=request.backend, base_url=client.host.base_url, model=info.model,
                             status=info.status, training_path=str(prepared.train_path),
                             training_file_id=training_id, validation_file_id=validation_id,
                             suffix=request.suffix, hyperparameters=info.hyperparameters, error=info.error,
                             fine_tuned_model=info.fine_tuned_model, card=card,
                             service_dir=self._service_dir(request.backend))
        return self.registry.save(_card_follows(entry))

    def _service_dir(self, backend: str) -> str | None:
        """The local service's data folder (where its models live), so the model can be served again later."""
        if backend != "local":
            return None
        from crafter_tui.finetune.local_service import service_dir

        return str(service_dir(self.config).resolve())

    # -- reading jobs ----------------------------------------------------------------------------
    def _refresh_sync(self, entry: JobEntry) -> JobInfo:
        if entry.host == "modal":
            info = self.modal().poll(entry)
        else:
            info = self.client(entry.host).retrieve(entry.job_id)
        changed = (info.status, info.fine_tuned_model, info.error) != (
            entry.status, entry.fine_tuned_model, entry.error)
        if changed:
            entry.status, entry.fine_tuned_model, entry.error = info.status, info.fine_tuned_model, info.error
            if not entry.external:  # a job launched elsewhere is never written to our registry
                self.registry.save(_card_follows(entry))
        return info

    async def refresh(self, entry: JobEntry) -> JobInfo:
        return await asyncio.to_thread(self._refresh_sync, entry)

    async def list_jobs(self, *, hosts: bool = False) -> list[JobRow]:
        """Every registered job, newest first, each refreshed from its host (concurrently); with ``hosts``
        also each configured host's own list (OpenAI's, Synth's, our service's), those crafter-tui did not
        launch marked ``external``. A host that cannot be listed is a row-less problem in ``host_problems``."""
        rows = await self._registry_rows()
        if not hosts:
            return rows
        ours = {(r.entry.host, r.entry.job_id) for r in rows}
        self.host_problems.clear()
        for name in await asyncio.to_thread(self.reachable_hosts):
            try:
                client = await self.client_async(name)
                listed = await asyncio.to_thread(client.list, 100)
            except UserError as exc:
                self.host_problems[name] = str(exc)
                continue
            rows.extend(JobRow(entry=_external_entry(info, client.host), info=info)
                        for info in listed if (name, info.id) not in ours)
        rows.sort(key=lambda r: r.entry.created_at, reverse=True)
        return rows

    def reachable_hosts(self) -> list[str]:
        """The protocol hosts worth asking about jobs we did not launch: OpenAI with a key, Synth with a URL,
        our service when it already runs (never started just to be asked). Blocking."""
        names = []
        if self.config.openai.api_key is not None:
            names.append("openai")
        if self.config.finetune.synth_base_url:
            names.append("synth")
        from crafter_tui.finetune.local_service import is_up

        if is_up(self.host("local").require_url()):
            names.append("local")
        return names

    async def _registry_rows(self) -> list[JobRow]:
        entries = self.registry.all()

        async def row(entry: JobEntry) -> JobRow:
            if entry.status in ("succeeded", "failed", "cancelled"):
                return JobRow(entry=entry, info=_info_from_entry(entry))
            try:
                return JobRow(entry=entry, info=await self.refresh(entry))
            except UserError as exc:
                return JobRow(entry=entry, problem=str(exc))

        return list(await asyncio.gather(*(row(entry) for entry in entries)))

    def find(self, job_id: str) -> JobEntry:
        """The registry's entry for ``job_id``, else the job on the first configured host that knows it
        (launched with another client, e.g. the openai SDK or OpenAI's dashboard). Blocking."""
        try:
            return self.registry.find(job_id)
        except JobNotFound as missing:
            asked = []
            for name in self.reachable_hosts():
                asked.append(name)
                client = self.client(name)
                try:
                    info = client.retrieve(job_id)
                except UserError:
                    continue
                return _external_entry(info, client.host)
            hosts = f"; not on {', '.join(asked)} either" if asked else "; no other host is configured"
            raise UserError(f"{missing.message}{hosts}", where="JOB_ID") from None

    async def locate(self, job_id: str) -> JobEntry:
        return await asyncio.to_thread(self.find, job_id)

    def _events_sync(self, entry: JobEntry, seen: set[str] | None = None) -> list[JobEvent]:
        if entry.host == "modal":
            events = self.modal().events(entry)
            return [e for e in events if not seen or e.id not in seen]
        return self.client(entry.host).events(entry.job_id, stop_at=seen)

    def _metrics_sync(self, entry: JobEntry) -> list[MetricPoint]:
        if entry.host == "modal":
            return metrics_from_events(self.modal().events(entry))
        return self.job_client(entry).metrics(entry.job_id)

    async def metrics(self, job_id: str) -> list[MetricPoint]:
        """A job's training metrics by step, from the host that ran it (the registry says which, else the
        first configured host that knows the id: a job launched with another client)."""
        return await asyncio.to_thread(self._metrics_sync, await self.locate(job_id))

    async def events(self, job_id: str) -> list[JobEvent]:
        """All events of a job, oldest first."""
        return await asyncio.to_thread(self._events_sync, await self.locate(job_id))

    async def detail(self, job_id: str) -> JobDetail:
        entry = await self.locate(job_id)
        info = await self.refresh(entry)
        events = await asyncio.to_thread(self._events_sync, entry)
        if entry.host == "modal":
            checkpoints = await asyncio.to_thread(self.modal().checkpoints, entry)
        else:
            client = await self.client_async(entry.host)
            try:
                checkpoints = await asyncio.to_thread(client.checkpoints, entry.job_id)
            except UserError:  # a host without the checkpoints route (not every OpenAI-shaped host has it)
                checkpoints = []
        return JobDetail(entry=entry, info=info, metrics=metrics_from_events(events), checkpoints=checkpoints,
                         events=events)

    async def watch(self, job_id: str, *, interval: float = 2.0) -> AsyncIterator[FinetuneEvent]:
        """Follow a job until it ends. One poll at a time; only new events are fetched and yielded."""
        entry = await self.locate(job_id)
        seen: set[str] = set()
        last_status: str | None = None
        while True:
            info = await self.refresh(entry)
            new = await asyncio.to_thread(self._events_sync, entry, seen)
            for event in new:
                seen.add(event.id)
                points = metrics_from_events([event])
                if points:
                    yield JobMetrics(job_id=entry.job_id, point=points[0])
                else:
                    yield JobMessage(job_id=entry.job_id, event=event)
            if info.status != last_status:
                last_status = info.status
                yield JobStatusChanged(job_id=entry.job_id, status=info.status, info=info)
            if info.done:
                yield JobFinished(job_id=entry.job_id, info=info)
                return
            await self._sleep(interval)

    async def cancel(self, job_id: str) -> JobInfo:
        entry = await self.locate(job_id)
        if entry.host == "modal":
            info = await asyncio.to_thread(self.modal().cancel, entry)
        else:
            client = await self.client_async(entry.host)
            info = await asyncio.to_thread(client.cancel, entry.job_id)
        entry.status = info.status
        if not entry.external:
            self.registry.save(entry)
        return info

    # -- models -----------------------------------------------------------------------------------
    def model_host(self, model: str, backend: str | None = None) -> str:
        """Which host serves ``model``: the job that made it, else ``backend``, else the configured one."""
        entry = self.registry.find_model(model)
        if entry is not None:
            return entry.host
        return backend or self.config.finetune.backend

    async def test_model(self, model: str, *, backend: str | None = None, count: int = 3,
                         seed: int = 0, max_tokens: int = 256) -> ModelTestReport:
        """Ask the model a few real Crafter turns; each reply must be a valid ``interact`` call."""
        host = self.model_host(model, backend)
        if host == "modal" and not self.config.finetune.modal_serve_url:
            raise UserError(MODAL_SERVING_HINT.format(model=model), where=model)
        client = (FineTuneClient(self.host("modal"), max_retries=self.config.openai.max_retries,
                                 timeout=self.config.openai.timeout)
                  if host == "modal" else await self.client_async(host))
        entry = self.registry.find_model(model)
        card = entry.card if entry is not None else None
        play = card.format if card is not None else None  # the turns the model was trained on, not the full ones
        text_actions = play is not None and play.actions == "text"
        if card is not None and card.sampling is not None:
            max_tokens = card.sampling.max_tokens
        checks = []
        turns = await asyncio.to_thread(crafter_turns, count, seed, play)
        for world_seed, step, messages in turns:
            try:
                reply = await asyncio.to_thread(client.chat, model, messages, None if text_actions else TOOLS,
                                                max_tokens=max_tokens)
            except UserError as exc:
                checks.append(ObservationCheck(seed=world_seed, step=step, passed=False, detail=str(exc)))
                continue
            passed, actions, detail = check_reply(reply.tool_calls, reply.content, text_actions=text_actions)
            checks.append(ObservationCheck(seed=world_seed, step=step, passed=passed, actions=actions, detail=detail))
        return ModelTestReport(model=model, checks=checks)

    def usage(self, model: str, backend: str | None = None) -> str:
        host = self.host(self.model_host(model, backend))
        key_env = {"openai": "OPENAI_API_KEY", "synth": "SYNTH_API_KEY"}.get(host.name)
        if host.name == "local" and self.config.finetune.local_token:
            key_env = "CRAFTER_TUI_SERVE_TOKEN"
        return usage_example(host.base_url or "", model, key_env)

    async def models(self, backend: str | None = None) -> dict[str, list[str] | str]:
        """Model names per host: what each reachable protocol host lists, plus registry models."""
        names = [backend] if backend else sorted({e.host for e in self.registry.all()} | {"local"})
        out: dict[str, list[str] | str] = {}
        for name in names:
            if name == "modal":
                out[name] = [e.fine_tuned_model for e in self.registry.all()
                             if e.host == "modal" and e.fine_tuned_model]
                continue
            try:
                client = await self.client_async(name)
                out[name] = await asyncio.to_thread(client.models)
            except UserError as exc:
                out[name] = f"unavailable: {exc}"
        return out


def launch_card(request: LaunchRequest, prepared: PreparedData) -> ModelCard | None:
    """The card the job's model will carry: its data's card, with the base model, host and sampling."""
    if prepared.card is None:
        return None
    return prepared.card.model_copy(update={"base_model": request.model, "host": request.backend,
                                            "sampling": request.sampling or prepared.card.sampling})


def _card_follows(entry: JobEntry) -> JobEntry:
    """The entry with its card naming the job and the model it produced (once there is one)."""
    if entry.card is not None:
        entry.card = entry.card.model_copy(update={"job_id": entry.job_id,
                                                   "fine_tuned_model": entry.fine_tuned_model})
    return entry


def _external_entry(info: JobInfo, host: Host) -> JobEntry:
    """A job crafter-tui did not launch, as an (unsaved) entry so it is shown and followed like ours."""
    return JobEntry(job_id=info.id, host=host.name, base_url=host.base_url, model=info.model, status=info.status,
                    created_at=float(info.created_at or 0), fine_tuned_model=info.fine_tuned_model,
                    error=info.error, hyperparameters=info.hyperparameters, suffix=info.suffix, external=True)


def _info_from_entry(entry: JobEntry) -> JobInfo:
    return JobInfo(id=entry.job_id, host=entry.host, status=entry.status, model=entry.model,
                   fine_tuned_model=entry.fine_tuned_model, created_at=int(entry.created_at), error=entry.error,
                   hyperparameters=entry.hyperparameters, suffix=entry.suffix)


def elapsed(since: float) -> str:
    seconds = int(time.time() - since)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
