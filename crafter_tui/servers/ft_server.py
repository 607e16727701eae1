"""``crafter-tui serve``: a self-hosted, OpenAI-compatible fine-tune + inference service.

It speaks the OpenAI protocol (``/v1/files``, ``/v1/fine_tuning/jobs`` with events,
checkpoints and cancel, ``/v1/models``, ``/v1/chat/completions`` with tools), so the same
``openai`` client that drives OpenAI or the Synth service drives this one. Jobs train in
worker processes (see ``ft_jobs``); finished models are loaded lazily by name and a few are
kept in memory. Every error is OpenAI's envelope ``{"error": {message, type, param, code}}``
with a fitting status; bad input is never a 500.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from crafter_tui.dataset.card import CARD_METADATA_KEY
from crafter_tui.errors import UserError
from crafter_tui.finetune.constrained import OutputSpec, SchemaError, output_spec
from crafter_tui.finetune.local_service import TOKEN_ENV_VAR, is_loopback
from crafter_tui.servers.ft_jobs import DEFAULT_TRAINER, JobManager, ServiceError
from crafter_tui.servers.guard import RequestGuard
from crafter_tui.servers.ft_models import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CheckpointList,
    CreateJobRequest,
    ErrorBody,
    ErrorDetail,
    EventList,
    FileDeleted,
    FileList,
    FileObject,
    JobList,
    JobObject,
    ModelList,
    ModelObject,
    ToolCall,
    ToolCallFunction,
    Usage,
)

log = logging.getLogger(__name__)

DEFAULT_INFERENCE = "crafter_tui.finetune.inference:load_model"
#: Upload cap (a training file) and the body cap of every other request (a chat request with a long history).
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
DEFAULT_MAX_BODY_BYTES = 16 << 20
#: Multipart framing around an uploaded file (boundaries, headers, the purpose field).
MULTIPART_SLACK = 64 * 1024


class ServeSettings(BaseModel):
    """How the service runs. ``trainer``/``inference`` are ``module:function`` import paths."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = None
    trainer: str = DEFAULT_TRAINER
    inference: str = DEFAULT_INFERENCE
    threads: int | None = Field(None, ge=1, le=256)
    model_cache_size: int = Field(3, ge=1, le=32)
    default_max_tokens: int = Field(256, ge=1, le=32_768)
    poll_interval: float = Field(0.25, gt=0)
    max_upload_bytes: int = Field(DEFAULT_MAX_UPLOAD_BYTES, ge=1024, le=1 << 40,
                                  description="largest training file accepted by POST /v1/files (413 above)")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=1 << 30,
                                description="largest body of every other request (413 above)")
    models_dir: Path | None = Field(None, description="folder a job may name base-model weights in "
                                    "(default <data_dir>/models)")


# -- inference ------------------------------------------------------------------------------
class ModelCache:
    """Loads models on first use and keeps the ``size`` most recently used ones."""

    def __init__(self, loader: str, size: int, threads: int | None = None) -> None:
        self.loader_spec = loader
        self.size = size
        self.threads = threads
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()

    def _loader(self) -> Callable[[Path], Any]:
        module_name, _, name = self.loader_spec.partition(":")
        return getattr(importlib.import_module(module_name), name or "load_model")

    def get(self, name: str, path: Path) -> Any:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            loader = self._loader()
            model = loader(path, threads=self.threads) if self.threads else loader(path)
            self._models[name] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def chat(self, name: str, path: Path, request: ChatRequest, max_tokens: int,
             output: OutputSpec | None = None) -> Any:
        """One reply; ``output`` (the request's constraint) is passed only when there is one, so an
        engine without constrained decoding still serves free generation."""
        model = self.get(name, path)
        if output is not None and "output" not in inspect.signature(model.chat).parameters:
            raise ServiceError(400, "This service's inference engine cannot constrain decoding (tool_choice "
                               "'required' or a function, strict tools, response_format); send tool_choice 'auto'.",
                               param="tool_choice", code="unsupported_value")
        extra = {"output": output} if output is not None else {}
        # one generation at a time: fastest on CPU anyway, and on a GPU it keeps the prompt cache coherent
        with self._generate_lock:
            return model.chat(request.messages, request.tools, max_tokens=max_tokens,
                              temperature=request.temperature or 0.0, seed=request.seed, **extra)


def _tool_calls(raw: Any) -> list[ToolCall] | None:
    """The inference engine's parsed tool calls in OpenAI's shape (arguments as a JSON string)."""
    import json

    if not raw:
        return None
    calls = []
    for index, call in enumerate(raw):
        item = call.model_dump() if hasattr(call, "model_dump") else dict(call)
        function = item.get("function") or {"name": item.get("name"), "arguments": item.get("arguments")}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(ToolCall(id=item.get("id") or f"call_{secrets.token_hex(8)}_{index}",
                              function=ToolCallFunction(name=str(function.get("name")), arguments=arguments)))
    return calls


def chat_response(model: str, result: Any) -> ChatResponse:
    tool_calls = _tool_calls(getattr(result, "tool_calls", None))
    finish = "tool_calls" if tool_calls else (getattr(result, "finish_reason", None) or "stop")
    if finish not in ("stop", "length", "tool_calls"):
        finish = "stop"
    prompt, completion = int(result.prompt_tokens), int(result.completion_tokens)
    return ChatResponse(
        id=f"chatcmpl-{secrets.token_hex(12)}", created=int(time.time()), model=model,
        choices=[ChatChoice(message=ChatMessage(content=result.content if not tool_calls else
                                                (result.content or None), tool_calls=tool_calls),
                            finish_reason=finish)],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion))


# -- errors and auth ---------------------------------------------------------------------------
def _error(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(message=message, type=type_, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        param = ".".join(loc) or None
        return _error(400, f"Invalid request: {param or 'body'}: {first.get('msg')}", param=param,
                      code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "invalid_api_key"}
        return _error(exc.status_code, str(exc.detail), code=codes.get(exc.status_code))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"Internal error: {type(exc).__name__}", type_="server_error")


def _auth_dependency(token: SecretStr | None) -> Callable[[Request], None]:
    expected = token.get_secret_value().encode() if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
            raise ServiceError(401, "Missing or wrong API key: send 'Authorization: Bearer <token>'.",
                               code="invalid_api_key")

    return check


def _page(items: list[Any], after: str | None, limit: int, key: Callable[[Any], str]) -> tuple[list[Any], bool]:
    """Items after the one whose id is ``after`` (lists are newest first), at most ``limit``."""
    start = 0
    if after:
        ids = [key(item) for item in items]
        if after not in ids:
            raise ServiceError(400, f"Unknown cursor 'after={after}'.", param="after", code="invalid_value")
        start = ids.index(after) + 1
    page = items[start:start + limit]
    return page, start + limit < len(items)


# -- the app ---------------------------------------------------------------------------------
def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI app (tests build it directly; ``serve`` runs it under uvicorn)."""
    manager = JobManager(settings.data_dir, trainer=settings.trainer, threads=settings.threads,
                         poll_interval=settings.poll_interval, models_dir=settings.models_dir)
    models = ModelCache(settings.inference, settings.model_cache_size, settings.threads)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await asyncio.to_thread(manager.stop)

    app = FastAPI(title="crafter-tui fine-tune service", lifespan=lifespan)
    app.state.manager = manager
    app.state.models = models
    _install_error_handlers(app)
    auth = [Depends(_auth_dependency(settings.token))]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "jobs": len(manager.list())}

    _file_routes(app, manager, auth, settings.max_upload_bytes)
    _job_routes(app, manager, auth)
    _model_routes(app, manager, models, settings, auth)
    # outermost: bodies capped before they are buffered, cross-site calls refused without a token, and
    # with one every route but /health (FastAPI's /docs and /openapi.json too) needs it
    app.add_middleware(RequestGuard, limit_for=lambda path: _body_limit(settings, path), render=_render_error,
                       token=settings.token.get_secret_value() if settings.token else None)
    return app


def _body_limit(settings: ServeSettings, path: str) -> int:
    return settings.max_upload_bytes + MULTIPART_SLACK if path == "/v1/files" else settings.max_body_bytes


def _render_error(status: int, message: str, code: str) -> bytes:
    return ErrorBody(error=ErrorDetail(message=message, code=code)).model_dump_json().encode()


def _file_routes(app: FastAPI, manager: JobManager, auth: list[Any], max_upload_bytes: int) -> None:
    @app.post("/v1/files", dependencies=auth)
    async def upload(file: UploadFile = File(...), purpose: str | None = Form(None),
                     purpose_query: str | None = Query(None, alias="purpose")) -> FileObject:
        chosen = purpose or purpose_query
        if chosen != "fine-tune":
            raise ServiceError(400, f"Unsupported purpose {chosen!r}; this service takes 'fine-tune'.",
                               param="purpose", code="invalid_value")
        # copied to disk in chunks, never held whole in memory (a 1.1 GiB upload used to cost 1.1 GB of RSS)
        return await asyncio.to_thread(manager.files.save_stream, file.filename or "upload.jsonl", chosen,
                                       file.file, max_upload_bytes)

    @app.get("/v1/files", dependencies=auth)
    async def list_files() -> FileList:
        return FileList(data=manager.files.list())

    @app.get("/v1/files/{file_id}", dependencies=auth)
    async def get_file(file_id: str) -> FileObject:
        return manager.files.get(file_id)

    @app.get("/v1/files/{file_id}/content", dependencies=auth)
    async def file_content(file_id: str) -> Response:
        manager.files.get(file_id)
        return Response(manager.files.data_path(file_id).read_bytes(), media_type="application/jsonl")

    @app.delete("/v1/files/{file_id}", dependencies=auth)
    async def delete_file(file_id: str) -> FileDeleted:
        return FileDeleted(id=file_id, deleted=manager.files.delete(file_id))


def _job_routes(app: FastAPI, manager: JobManager, auth: list[Any]) -> None:
    @app.post("/v1/fine_tuning/jobs", dependencies=auth)
    async def create_job(request: CreateJobRequest) -> JobObject:
        return await asyncio.to_thread(manager.create, request)

    @app.get("/v1/fine_tuning/jobs", dependencies=auth)
    async def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=1000)) -> JobList:
        page, more = _page(manager.list(), after, limit, lambda j: j.id)
        return JobList(data=page, has_more=more)

    @app.get("/v1/fine_tuning/jobs/{job_id}", dependencies=auth)
    async def get_job(job_id: str) -> JobObject:
        return manager.get(job_id)

    @app.get("/v1/fine_tuning/jobs/{job_id}/events", dependencies=auth)
    async def job_events(job_id: str, after: str | None = None,
                         limit: int = Query(20, ge=1, le=10_000)) -> EventList:
        events = await asyncio.to_thread(manager.events, job_id)
        page, more = _page(events, after, limit, lambda e: e.id)
        return EventList(data=page, has_more=more)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", dependencies=auth)
    async def job_checkpoints(job_id: str, after: str | None = None,
                              limit: int = Query(10, ge=1, le=1000)) -> CheckpointList:
        items = await asyncio.to_thread(manager.checkpoints, job_id)
        page, more = _page(items, after, limit, lambda c: c.id)
        return CheckpointList(data=page, has_more=more, first_id=page[0].id if page else None,
                              last_id=page[-1].id if page else None)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel", dependencies=auth)
    async def cancel_job(job_id: str) -> JobObject:
        return manager.cancel(job_id)


def _model_routes(app: FastAPI, manager: JobManager, models: ModelCache, settings: ServeSettings,
                  auth: list[Any]) -> None:
    started = int(time.time())

    def tuned_model(name: str, job: JobObject | None) -> ModelObject:
        created = (job.finished_at or job.created_at) if job else started
        return ModelObject(id=name, created=created, owned_by="user", card=model_card(name, job))

    @app.get("/v1/models", dependencies=auth)
    async def list_models() -> ModelList:
        bases = await asyncio.to_thread(manager.base_models)
        data = [ModelObject(id=name, created=started, owned_by="crafter-tui") for name in bases]
        jobs = {j.fine_tuned_model: j for j in manager.list() if j.fine_tuned_model}
        data += [tuned_model(name, jobs.get(name)) for name in manager.model_paths()]
        return ModelList(data=data)

    @app.get("/v1/models/{model_id:path}", dependencies=auth)
    async def get_model(model_id: str) -> ModelObject:
        if model_id in manager.model_paths():
            job = next((j for j in manager.list() if j.fine_tuned_model == model_id), None)
            return tuned_model(model_id, job)
        if model_id in manager.base_models():
            return ModelObject(id=model_id, created=started, owned_by="crafter-tui")
        raise ServiceError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(request: ChatRequest) -> ChatResponse:
        if request.stream:
            raise ServiceError(400, "Streaming is not supported by this service; send stream=false.",
                               param="stream", code="unsupported_value")
        path = manager.model_paths().get(request.model)
        if path is None:
            hint = (" It is a base recipe for fine-tuning; chat with a fine-tuned model."
                    if request.model in manager.base_models() else "")
            raise ServiceError(404, f"The model '{request.model}' does not exist.{hint}", param="model",
                               code="model_not_found")
        if not path.exists():
            raise ServiceError(404, f"The weights of '{request.model}' are missing ({path.name}).",
                               param="model", code="model_not_found")
        budget = request.token_budget(settings.default_max_tokens)
        try:  # before the model loads: a schema we cannot honour is the client's 400
            output = output_spec(request.tools, request.tool_choice, request.response_format, budget)
            result = await asyncio.to_thread(models.chat, request.model, path, request, budget, output)
        except SchemaError as exc:
            raise ServiceError(400, exc.message, param=exc.param, code=exc.code) from None
        except (ValueError, UserError) as exc:  # the engine rejects a prompt it cannot take
            raise ServiceError(400, f"The model cannot take this request: {exc}", param="messages",
                               code="invalid_value") from None
        return chat_response(request.model, result)


def model_card(name: str, job: JobObject | None) -> dict[str, Any] | None:
    """The card a job was handed (``metadata``), completed with what the service knows of the model.

    A card that does not parse is not shown (the model is still served): the client then treats
    the model as one it knows nothing about, which is what it would do without a card."""
    import json

    text = (job.metadata or {}).get(CARD_METADATA_KEY) if job is not None else None
    if not text:
        return None
    try:
        card = json.loads(text)
    except ValueError:
        log.warning("job %s: its model card is not JSON; not shown", job.id)
        return None
    if not isinstance(card, dict):
        return None
    return {**card, "host": "local", "job_id": job.id, "fine_tuned_model": name,
            "base_model": card.get("base_model") or job.model}


def warn_if_exposed(settings: ServeSettings) -> str | None:
    """The warning to print when the service listens beyond loopback without a token."""
    if not is_loopback(settings.host) and settings.token is None:
        return (f"warning: listening on {settings.host} without a token: anyone who can reach this port "
                "can read your data and use your CPU. Pass --token (or set CRAFTER_TUI_SERVE_TOKEN).")
    return None


def run_server(settings: ServeSettings) -> None:
    """Run under uvicorn until interrupted (workers are stopped and resumed on the next start)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
