"""Client of the Crafter environment service: raw routes and ``RemoteEnv`` (an ``EpisodeEnv``).

``RemoteEnv`` returns the same ``WorldState``/``StepOutcome`` objects as the in-process world
(the service ships every field ``WorldState`` holds), so ``rollout --env remote`` replays the
in-process trajectories exactly. Connection failures are retried with bounded exponential
backoff; steps carry a ``request_id`` the service deduplicates, so a retried step never plays
twice. When the service stays unreachable, ``EnvServiceError`` says so and the runner ends the
episode with termination ``env_error`` and that message.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import numpy as np

from crafter_tui.rollout.env_models import ENV_NAME, InitializeResponse, Observation, StepResponse
from crafter_tui.world.env import StepOutcome, WorldState

RETRY_STATUSES = frozenset({502, 503, 504})


class EnvServiceError(Exception):
    """The env service failed or refused a request (after retries, for connection failures)."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:500]


class EnvServiceClient:
    """Async httpx client of one env service (one connection pool, shared by many episodes)."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.1, max_backoff: float = 2.0,
                 max_connections: int = 64) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None, retries: int | None = None) -> dict[str, Any]:
        """One call, retrying transport failures and 502/503/504 with exponential backoff."""
        delay = self.backoff
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                failure = f"{exc.__class__.__name__}: {exc or 'no detail'}"
                status = None
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUSES:
                    detail = _detail(response)
                    raise EnvServiceError(f"env service {method} {path} -> {response.status_code}: {detail}",
                                          status=response.status_code, detail=detail)
                failure, status = f"HTTP {response.status_code}", response.status_code
            if attempt < retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise EnvServiceError(
            f"env service at {self.base_url} unreachable after {retries + 1} attempts ({method} {path}: {failure})",
            status=status)

    async def health(self) -> dict[str, Any]:
        return await self.request("GET", "/health")

    async def initialize(self, *, seed: int | None = None, difficulty: str = "normal", max_steps: int = 10_000,
                         include_text: bool = True, include_semantic_map: bool = False,
                         include_image: bool = False, **extra: Any) -> InitializeResponse:
        config = {"seed": seed, "difficulty": difficulty, "max_steps": max_steps, "include_text": include_text,
                  "include_semantic_map": include_semantic_map, "include_image": include_image, **extra}
        if seed is None:
            del config["seed"]
        data = await self.request("POST", f"/env/{ENV_NAME}/initialize", json={"config": config})
        return InitializeResponse.model_validate(data)

    async def step(self, env_id: str, actions: list[int | str], *, request_id: str | None = None,
                   **options: bool) -> StepResponse:
        """Play ``actions`` in order (stops at the end of the episode). ``options``: text/semantic_map/image."""
        body = {"env_id": env_id, "request_id": request_id or uuid.uuid4().hex,
                "action": {"tool_calls": [{"tool": "interact", "args": {"action": a}} for a in actions]}}
        params = {name: "true" if value else "false" for name, value in options.items()}
        data = await self.request("POST", f"/env/{ENV_NAME}/step", json=body, params=params or None)
        return StepResponse.model_validate(data)

    async def terminate(self, env_id: str, *, retries: int | None = None) -> dict[str, Any]:
        return await self.request("POST", f"/env/{ENV_NAME}/terminate", json={"env_id": env_id}, retries=retries)

    async def metadata(self, env_id: str | None = None) -> dict[str, Any]:
        return await self.request("GET", f"/env/{ENV_NAME}/metadata", params={"env_id": env_id} if env_id else None)

    async def semantic_map(self, env_id: str) -> np.ndarray:
        data = await self.request("GET", f"/v1/envs/{env_id}/semantic_map")
        return np.asarray(data["semantic_map"], dtype=np.uint8)  # as CrafterWorld.semantic_map()

    async def aclose(self) -> None:
        await self._http.aclose()


def world_state(obs: Observation) -> WorldState:
    """The exact ``WorldState`` the service's world held (every field is shipped)."""
    return WorldState(
        step=obs.num_steps_taken,
        position=(obs.player_position[0], obs.player_position[1]),
        facing=(obs.player_direction[0], obs.player_direction[1]),
        sleeping=obs.sleeping,
        daylight=obs.daylight,
        inventory=dict(obs.inventory),
        achievements=dict(obs.achievements_counts),
        local_view=obs.local_view,
        facing_id=obs.facing_id,
    )


class RemoteEnv:
    """``EpisodeEnv`` over HTTP: one episode at a time on the env service."""

    def __init__(self, base_url: str, token: str | None = None, difficulty: str = "normal",
                 max_steps: int = 10_000, timeout: float = 30.0, *, client: EnvServiceClient | None = None,
                 retries: int = 4) -> None:
        self.difficulty = difficulty
        self.max_steps = max_steps
        self._client = client or EnvServiceClient(base_url, token, timeout=timeout, retries=retries)
        self._owns_client = client is None
        self.env_id: str | None = None
        self._map: np.ndarray | None = None
        self._steps = 0

    async def reset(self, seed: int) -> WorldState:
        await self._terminate_current()
        reply = await self._client.initialize(seed=seed, difficulty=self.difficulty, max_steps=self.max_steps,
                                              include_text=False)
        self.env_id = reply.env_id
        self._map, self._steps = None, 0
        return world_state(reply.observation)

    async def step(self, action: int) -> StepOutcome:
        env_id = self._require_env()
        self._steps += 1
        reply = await self._client.step(env_id, [int(action)], request_id=f"{env_id}-{self._steps}", text=False)
        self._map = None
        info = reply.info
        return StepOutcome(world_state(reply.observation), reply.reward, reply.done,
                           info.terminated, info.truncated, list(info.new_achievements))

    async def semantic_map(self) -> np.ndarray:
        """The whole map, fetched once per state (the scripted expert asks every turn)."""
        if self._map is None:
            self._map = await self._client.semantic_map(self._require_env())
        return self._map

    async def close(self) -> None:
        try:
            await self._terminate_current()
        finally:
            if self._owns_client:
                await self._client.aclose()

    async def _terminate_current(self) -> None:
        env_id, self.env_id = self.env_id, None
        if env_id is None:
            return
        try:
            await self._client.terminate(env_id, retries=0)  # best effort: idle envs are reaped anyway
        except EnvServiceError:
            pass  # gone already (reaped, service restarted): nothing left to free

    def _require_env(self) -> str:
        if self.env_id is None:
            raise EnvServiceError("RemoteEnv used before reset()")
        return self.env_id
