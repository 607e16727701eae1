"""The Crafter environment service (``crafter-tui serve-env``, default :8901).

Speaks the synth CrafterClassic routes (``/health``, ``/env/CrafterClassic/initialize|step|
terminate|metadata``) with correct values: per-step rewards, real ``terminated``/``truncated``,
seeds and difficulty honoured, out-of-range actions rejected (422) instead of clipped, steps
after the end refused (409). Every world is a ``CrafterWorld``, so a seed replays exactly as
in-process and ``RemoteEnv`` can rebuild the same ``WorldState`` from an observation.

Steps with the common body shape are served by ``env_fast.LeanStepMiddleware`` (no routing, no
``Request``, no pydantic pass over the body); every other body falls through, intact, to the
validated ``step`` route, so errors read exactly as before. Responses are encoded with orjson.
Where a step's CPU goes (``benchmarks/bench_env_service.py``, ~380 us a step on the shared 2-core
box): the world update ~100-135 us, the text observation ~85 us, world generation for the resets
of random-action episodes ~30 us amortised, the other observation fields and JSON ~20 us, HTTP
(uvicorn, asyncio, sockets) and the handler ~110 us.

Why the handlers are ``async`` and step inline: a step costs ~0.2 ms of CPU, little next to a
thread hop plus GIL hand-off; measured in ``benchmarks/bench_env_service.py`` (``--threadpool``
flips ``step_in_threadpool``). Initialize (world generation, ~6 ms) always runs in a thread
so it does not stall other clients' steps. A per-env ``asyncio.Lock`` serialises steps on one
env; a repeated ``request_id`` returns the cached response, which makes client retries safe.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from crafter_tui.servers.env_fast import FastStep, LeanStepMiddleware
from crafter_tui.servers.guard import RequestGuard
from crafter_tui.rollout.env_models import (
    ENV_NAME,
    SEED_LIMIT,
    InitializeRequest,
    ObservationOptions,
    StepRequest,
    TerminateRequest,
)
from crafter_tui.world.difficulty import PRESETS
from crafter_tui.world.env import CrafterWorld, StepOutcome, WorldState
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS, DIRECTIONS, SEMANTIC_NAMES
from crafter_tui.world.text_obs import render_text_observation

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
PREFIX = f"/env/{ENV_NAME}"


#: A step or initialize body is well under 1 KB; 1 MiB leaves room for any real one.
DEFAULT_MAX_BODY_BYTES = 1 << 20


class EnvServiceSettings(BaseModel):
    """How ``serve-env`` runs; the CLI flags map one to one."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8901, ge=0, le=65535)
    token: SecretStr | None = None
    max_envs: int = Field(1000, ge=1, le=1_000_000)
    idle_timeout: float = Field(600.0, gt=0, description="seconds without a request before an env is reaped")
    reap_interval: float | None = Field(None, gt=0, description="default: idle_timeout / 4, at most 30 s")
    step_in_threadpool: bool = False
    fast_step: bool = Field(True, description="serve well-formed step bodies on the lean ASGI path (fast_step.py)")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=1 << 30,
                                description="request bodies larger than this are refused (413) before buffering")


class ServiceError(Exception):
    """An HTTP error with a status and a message naming what is wrong."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class EnvSlot:
    """One live environment and what the service remembers about it."""

    env_id: str
    world: CrafterWorld
    seed: int
    options: ObservationOptions
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    turns: int = 0  # step requests served (the "turn" of the text observation)
    total_reward: float = 0.0
    last_reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    last_request_id: str | None = None
    last_response: bytes | None = None


class EnvRegistry:
    """Live environments by id, with a hard cap (reserved before the slow world generation)."""

    def __init__(self, max_envs: int) -> None:
        self.max_envs = max_envs
        self.slots: dict[str, EnvSlot] = {}
        self._reserved = 0

    def reserve(self) -> None:
        if len(self.slots) + self._reserved >= self.max_envs:
            raise ServiceError(429, f"too many live environments (max_envs={self.max_envs}); terminate some first")
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1

    def get(self, env_id: str) -> EnvSlot:
        slot = self.slots.get(env_id)
        if slot is None:
            raise ServiceError(404, f"unknown env_id {env_id!r} (never created, terminated or reaped)")
        return slot

    def reap(self, idle_timeout: float, now: float | None = None) -> list[str]:
        """Drop environments idle for longer than ``idle_timeout`` seconds; returns their ids."""
        now = time.monotonic() if now is None else now
        stale = [env_id for env_id, slot in self.slots.items()
                 if now - slot.last_used > idle_timeout and not slot.lock.locked()]
        for env_id in stale:
            del self.slots[env_id]
        return stale


# -- bodies and observations ---------------------------------------------------------------------

def parse_body(model: type[ModelT], body: bytes) -> ModelT:
    """Validate a JSON body: malformed JSON is a 400, a bad field a 422 naming it."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ServiceError(400, f"malformed JSON body: {errors[0]['msg']}") from None
        raise ServiceError(422, [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                                 for err in errors]) from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def query_options(params: Mapping[str, str], base: ObservationOptions) -> ObservationOptions:
    """Per-request overrides: ``?text=``, ``?semantic_map=``, ``?image=`` (true/false)."""
    values = base.model_dump()
    for name, key in (("text", "include_text"), ("semantic_map", "include_semantic_map"), ("image", "include_image")):
        raw = params.get(name)
        if raw is None:
            continue
        lowered = raw.lower()
        if lowered not in _TRUE | _FALSE:
            raise ServiceError(422, [{"loc": ["query", name], "msg": f"expected true or false, got {raw!r}",
                                      "type": "bool_parsing"}])
        values[key] = lowered in _TRUE
    return ObservationOptions(**values)


def png_base64(frame: Any) -> str:
    from PIL import Image  # imported lazily: only image requests pay for it

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_observation(slot: EnvSlot, state: WorldState, options: ObservationOptions) -> dict[str, Any]:
    """Synth's observation fields with correct values, plus what rebuilds ``WorldState`` exactly."""
    obs: dict[str, Any] = {
        "inventory": state.inventory,
        "achievements_status": {name: state.achievements.get(name, 0) > 0 for name in ACHIEVEMENTS},
        "player_position": list(state.position),
        "player_direction": list(state.facing),
        "player_direction_name": DIRECTIONS.get(state.facing, "?"),
        "num_steps_taken": state.step,
        "max_steps_episode": slot.world.max_steps,
        "reward_last_step": slot.last_reward,
        "total_reward_episode": slot.total_reward,
        "terminated": slot.terminated,
        "truncated": slot.truncated,
        "achievements_counts": state.achievements,
        "local_view": state.local_view,
        "facing_id": state.facing_id,
        "facing_name": SEMANTIC_NAMES[state.facing_id],
        "sleeping": state.sleeping,
        "daylight": state.daylight,
    }
    if options.include_text:
        obs["text"] = render_text_observation(state, turn=slot.turns, max_steps=slot.world.max_steps)
    if options.include_semantic_map:
        obs["semantic_map"] = slot.world.semantic_map().tolist()
    if options.include_image:
        obs["image_png_base64"] = png_base64(slot.world.render())
    return obs


def dump_json(value: Any) -> bytes:
    """Compact JSON. orjson: ~10x cheaper than ``json.dumps`` on a step response; the values parse
    back identically (floats round-trip exactly; only the spelling of tiny exponents differs)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dump_json(value), status_code=status, media_type="application/json")


def run_actions(slot: EnvSlot, action_ids: list[int], options: ObservationOptions) -> dict[str, Any]:
    """Play ``action_ids`` in order (stopping at the end of the episode) and build the step response."""
    outcomes: list[StepOutcome] = []
    for action in action_ids:
        outcome = slot.world.step(action)
        outcomes.append(outcome)
        slot.last_reward = outcome.reward
        slot.total_reward += outcome.reward
        if outcome.done:
            slot.terminated, slot.truncated = outcome.terminated, outcome.truncated
            break
    slot.turns += 1
    last = outcomes[-1]
    return {
        "observation": build_observation(slot, last.state, options),
        "reward": sum(o.reward for o in outcomes),
        "done": last.done,
        "terminated": last.terminated,
        "truncated": last.truncated,
        "info": {
            "terminated": last.terminated,
            "truncated": last.truncated,
            "new_achievements": [name for o in outcomes for name in o.new_achievements],
            "rewards": [o.reward for o in outcomes],
            "actions_executed": len(outcomes),
            "actions_requested": len(action_ids),
        },
    }


def slot_metadata(slot: EnvSlot) -> dict[str, Any]:
    return {
        "env_id": slot.env_id,
        "env_name": ENV_NAME,
        "seed": slot.seed,
        "difficulty": slot.world.difficulty.name,
        "max_steps": slot.world.max_steps,
        "num_steps_taken": slot.world.state().step,
        "done": slot.world.done,
        "terminated": slot.terminated,
        "truncated": slot.truncated,
        "total_reward_episode": slot.total_reward,
        "age_s": time.monotonic() - slot.created,
        "idle_s": time.monotonic() - slot.last_used,
        "options": slot.options.model_dump(),
    }


def service_metadata(settings: EnvServiceSettings, registry: EnvRegistry) -> dict[str, Any]:
    return {
        "env_name": ENV_NAME,
        "actions": list(ACTIONS),
        "achievements": list(ACHIEVEMENTS),
        "semantic_names": list(SEMANTIC_NAMES),
        "difficulties": list(PRESETS),
        "live_envs": len(registry.slots),
        "max_envs": settings.max_envs,
        "idle_timeout": settings.idle_timeout,
    }


# -- auth ------------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_warning(settings: EnvServiceSettings) -> str | None:
    """A warning when the service is reachable from other machines without a token."""
    if settings.token is None and not is_loopback(settings.host):
        return (f"warning: serving on {settings.host} without --token: anyone who can reach this port "
                "can create and drive environments")
    return None


# -- the app ---------------------------------------------------------------------------------------

def create_app(settings: EnvServiceSettings | None = None) -> FastAPI:
    """The service as an ASGI app (tests run it in-process with uvicorn in a thread)."""
    settings = settings or EnvServiceSettings()
    registry = EnvRegistry(settings.max_envs)
    reap_every = settings.reap_interval or min(settings.idle_timeout / 4, 30.0)

    async def reaper() -> None:
        while True:
            await asyncio.sleep(reap_every)
            for env_id in registry.reap(settings.idle_timeout):
                log.info("reaped idle env %s", env_id)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()
            registry.slots.clear()

    app = FastAPI(title="crafter-tui env service", lifespan=lifespan)
    app.state.registry = registry
    app.state.settings = settings
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> Response:
        return json_response({"detail": exc.detail}, exc.status)

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "supported_environments": [ENV_NAME],
                              "live_envs": len(registry.slots), "max_envs": settings.max_envs})

    @app.post(f"{PREFIX}/initialize")
    async def initialize(request: Request) -> Response:
        req = parse_body(InitializeRequest, await request.body())
        options = query_options(request.query_params, req.options())  # validated before any world exists
        seed = req.seed()
        seed = secrets.randbelow(SEED_LIMIT) if seed is None else seed
        registry.reserve()
        try:
            world = CrafterWorld(req.difficulty(), max_steps=req.max_steps())
            state = await run_in_threadpool(world.reset, seed)
        finally:
            registry.release()
        slot = EnvSlot(env_id=uuid.uuid4().hex, world=world, seed=seed, options=req.options())
        registry.slots[slot.env_id] = slot
        obs = build_observation(slot, state, options)
        return json_response({"env_id": slot.env_id, "observation": obs, "done": False,
                              "info": {"seed": seed, "difficulty": world.difficulty.name,
                                       "max_steps": world.max_steps}})

    async def play(slot: EnvSlot, action_ids: list[int], options: ObservationOptions,
                   request_id: str | None) -> bytes:
        """The step response body (both step paths end here); a ``ServiceError`` for a finished episode."""
        async with slot.lock:
            slot.last_used = time.monotonic()
            if request_id is not None and request_id == slot.last_request_id and slot.last_response:
                return slot.last_response
            if slot.world.done:
                how = "the player died" if slot.terminated else "max_steps was reached"
                raise ServiceError(409, f"episode of env {slot.env_id} is over ({how} at step "
                                        f"{slot.world.state().step}); initialize a new one")
            if settings.step_in_threadpool:
                result = await run_in_threadpool(run_actions, slot, action_ids, options)
            else:
                result = run_actions(slot, action_ids, options)
            body = orjson.dumps(result)
            slot.last_request_id, slot.last_response = request_id, body
            slot.last_used = time.monotonic()
            return body

    async def step(request: Request) -> Response:
        """The validated path: every body the lean path passes on (names, lists, errors) lands here."""
        req = parse_body(StepRequest, await request.body())
        slot = registry.get(req.env_id)
        actions = [a for call in req.action.tool_calls for a in call.args.action_ids()]
        body = await play(slot, actions, query_options(request.query_params, slot.options), req.request_id)
        return Response(body, media_type="application/json")

    app.add_route(f"{PREFIX}/step", step, methods=["POST"])

    async def lean_step(parsed: FastStep, query_string: bytes) -> tuple[int, bytes]:
        """The lean path: a body ``parse_fast_step`` already checked, no Request object, no routing."""
        try:
            slot = registry.get(parsed.env_id)
            options = slot.options
            if query_string:
                params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
                options = query_options(params, options)
            return 200, await play(slot, parsed.action_ids, options, parsed.request_id)
        except ServiceError as exc:
            return exc.status, dump_json({"detail": exc.detail})

    app.state.lean_step = lean_step
    if settings.fast_step:
        app.add_middleware(LeanStepMiddleware, path=f"{PREFIX}/step", handler=lean_step)

    @app.post(f"{PREFIX}/terminate")
    async def terminate(request: Request) -> Response:
        req = parse_body(TerminateRequest, await request.body())
        slot = registry.get(req.env_id)
        async with slot.lock:
            registry.slots.pop(req.env_id, None)
            state = slot.world.state()
        return json_response({
            "public": {"env_id": slot.env_id, "terminated": True, "num_steps_taken": state.step,
                       "total_reward_episode": slot.total_reward,
                       "achievements_status": {n: state.achievements.get(n, 0) > 0 for n in ACHIEVEMENTS},
                       "episode_done": slot.world.done},
            "private": {"seed": slot.seed, "difficulty": slot.world.difficulty.name},
        })

    @app.get(f"{PREFIX}/metadata")
    async def metadata(env_id: str | None = None) -> Response:
        if env_id is None:
            return json_response(service_metadata(settings, registry))
        slot = registry.get(env_id)
        slot.last_used = time.monotonic()
        return json_response(slot_metadata(slot))

    @app.get("/v1/envs/{env_id}/semantic_map")
    async def semantic_map(env_id: str) -> Response:
        """Native: the whole 64x64 map, indexed [x][y] (privileged; the scripted expert reads it)."""
        slot = registry.get(env_id)
        slot.last_used = time.monotonic()
        return json_response({"env_id": env_id, "semantic_map": slot.world.semantic_map().tolist()})

    app.add_middleware(**guard_options(settings))  # added last, so it runs first: the lean step path is guarded too
    return app


def _render_error(status: int, message: str, code: str) -> bytes:
    return orjson.dumps({"detail": message})


def guard_options(settings: EnvServiceSettings) -> dict[str, Any]:
    """The ``RequestGuard`` of this service: body limit, cross-site refusal without a token, the token."""
    return {"middleware_class": RequestGuard, "limit_for": lambda _path: settings.max_body_bytes,
            "render": _render_error, "token": settings.token.get_secret_value() if settings.token else None}


def asgi_app(app: FastAPI) -> ASGIApp:
    """What uvicorn runs: ``app`` behind the lean step path, when ``fast_step`` is on.

    Inside FastAPI the lean path sits under Starlette's own layers (``Starlette.__call__``, the
    server-error, telemetry and body-limit middlewares), which every step paid for. Outside,
    a common-shape step goes straight to the handler (after the same ``RequestGuard``: token,
    origin, body size); every other request, including step bodies the lean path passes on,
    reaches the complete app unchanged (where its own guard and lean middleware run as before,
    so ``create_app`` alone is still the whole service).
    """
    settings: EnvServiceSettings = app.state.settings
    if not settings.fast_step:
        return app
    front: ASGIApp = LeanStepMiddleware(app, path=f"{PREFIX}/step", handler=app.state.lean_step)
    options = guard_options(settings)
    return options.pop("middleware_class")(front, **options)


def serve(settings: EnvServiceSettings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Run the service in the foreground until interrupted (``crafter-tui serve-env``)."""
    import uvicorn

    # No access log and no proxy-header middleware: the service reads no client address, and both
    # cost CPU on every step request (the CPU is what limits steps/s, see bench_env_service.py).
    config = uvicorn.Config(asgi_app(create_app(settings)), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, proxy_headers=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready()
    server.run()


class BackgroundEnvService:
    """The service on a free loopback port in a daemon thread (tests, benchmarks, local rollouts).

    Use as a context manager; ``port=0`` picks a free port, read back from ``base_url``.
    """

    def __init__(self, settings: EnvServiceSettings | None = None) -> None:
        import threading

        import uvicorn

        self.settings = settings or EnvServiceSettings(port=0)
        self.app = create_app(self.settings)
        config = uvicorn.Config(asgi_app(self.app), host=self.settings.host, port=self.settings.port,
                                log_level="warning", access_log=False, lifespan="on",
                                proxy_headers=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="env-service", daemon=True)
        self.base_url = ""

    def start(self, timeout: float = 10.0) -> "BackgroundEnvService":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the env service did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "BackgroundEnvService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
