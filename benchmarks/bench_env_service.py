"""Env service speed: loopback throughput with 8 clients, one client's step latency, RSS with many envs.

The service runs as ``crafter-tui serve-env`` in its own process (as in production); the load
comes from asyncio clients in this process, each driving its own environment with random
actions (re-initialising when an episode ends; those resets count in the elapsed time).

The clients share the machine's 2 cores with the service, so by default they are ``RawClient``s
(one keep-alive HTTP/1.1 connection each, ~40 us of CPU per request) rather than httpx
(~400 us), so the figure measures the service, not the load generator. ``--client httpx``
measures with httpx as before; ``--no-fast-step`` serves every step on the validated route.

    python benchmarks/bench_env_service.py [--small] [--threadpool-too] [--client raw|httpx] [--no-fast-step]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402 - benchmarks run as scripts from a checkout

import argparse
import asyncio
import os
import random
import resource
import socket
import statistics
import subprocess
import time

import httpx
import orjson

INIT = "/env/CrafterClassic/initialize"
STEP = "/env/CrafterClassic/step"


class RawResponse:
    """The little of ``httpx.Response`` the bench reads."""

    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content

    def json(self) -> dict:
        return orjson.loads(self.content)


class RawClient:
    """A cheap keep-alive HTTP/1.1 client: one connection per concurrent caller, JSON bodies only."""

    def __init__(self, base_url: str, limits: object = None) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._open: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> "RawClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._open:
            writer.close()

    async def post(self, path: str, json: dict, params: dict[str, str] | None = None) -> RawResponse:
        if params:
            path += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        body = orjson.dumps(json)
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._open.append(writer)
        writer.write(head + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
        content = await reader.readexactly(length)
        self._idle.append((reader, writer))
        return RawResponse(int(lines[0].split(b" ", 2)[1]), content)


def make_client(kind: str, url: str, connections: int = 8):
    if kind == "raw":
        return RawClient(url)
    return httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=connections))



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``crafter-tui serve-env`` on a free port, stopped on exit."""

    def __init__(self, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if "--no-fast-step" in flags:  # not a CLI flag: the A/B baseline runs the same server with it off
            flags = tuple(f for f in flags if f != "--no-fast-step")
            max_envs = flags[flags.index("--max-envs") + 1]
            command = [sys.executable, "-c", "from crafter_tui.servers.env_server import EnvServiceSettings, serve; "
                       f"serve(EnvServiceSettings(port={self.port}, max_envs={max_envs}, "
                       f"step_in_threadpool={'--threadpool' in flags}, fast_step=False))"]
        else:
            command = [sys.executable, "-m", "crafter_tui", "serve-env", "--port", str(self.port), *flags]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> "ServiceProcess":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("serve-env did not come up")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def cpu_seconds(self) -> float:
        """User + system CPU the service process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set size of the service process, MiB."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def step_body(env_id: str, action: int) -> dict:
    return {"env_id": env_id, "action": {"tool_calls": [{"tool": "interact", "args": {"action": action}}]}}


async def drive(client: httpx.AsyncClient, seed: int, deadline: float, latencies: list[float] | None,
                params: dict[str, str] | None = None) -> int:
    """Random actions on one env until ``deadline``; returns steps taken."""
    rng = random.Random(seed)
    env_id = (await client.post(INIT, json={"config": {"seed": seed}})).json()["env_id"]
    steps = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        response = await client.post(STEP, json=step_body(env_id, rng.randrange(17)), params=params)
        if latencies is not None:
            latencies.append(time.perf_counter() - start)
        steps += 1
        if response.status_code != 200 or response.json()["done"]:
            await client.post("/env/CrafterClassic/terminate", json={"env_id": env_id})
            seed += 1000
            env_id = (await client.post(INIT, json={"config": {"seed": seed}})).json()["env_id"]
    await client.post("/env/CrafterClassic/terminate", json={"env_id": env_id})
    return steps


async def throughput(service: ServiceProcess, clients: int, seconds: float,
                     params: dict[str, str] | None = None, kind: str = "raw") -> tuple[float, float]:
    """(aggregate steps/s, service CPU microseconds per step) with ``clients`` concurrent clients."""
    async with make_client(kind, service.url, clients) as client:
        await drive(client, 0, time.perf_counter() + 0.5, None)  # warm-up
        cpu, start = service.cpu_seconds(), time.perf_counter()
        deadline = start + seconds
        counts = await asyncio.gather(*(drive(client, 100 + i, deadline, None, params) for i in range(clients)))
        steps = sum(counts)
        return steps / (time.perf_counter() - start), (service.cpu_seconds() - cpu) / steps * 1e6


async def latency(service: ServiceProcess, seconds: float, kind: str = "raw") -> tuple[list[float], float]:
    """One client's step latencies, and the service's CPU microseconds per step (initialize excluded)."""
    samples: list[float] = []
    rng = random.Random(7)
    async with make_client(kind, service.url) as client:
        await drive(client, 0, time.perf_counter() + 0.5, None)
        seed, cpu, deadline = 7, 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            env_id = (await client.post(INIT, json={"config": {"seed": seed}})).json()["env_id"]
            before, done = service.cpu_seconds(), False
            while not done and time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(STEP, json=step_body(env_id, rng.randrange(17)))
                samples.append(time.perf_counter() - start)
                done = response.json()["done"]
            cpu += service.cpu_seconds() - before
            await client.post("/env/CrafterClassic/terminate", json={"env_id": env_id})
            seed += 1
    return samples, cpu / len(samples) * 1e6


async def hold_envs(url: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        gate = asyncio.Semaphore(4)

        async def one(seed: int) -> None:
            async with gate:
                env_id = (await client.post(INIT, json={"config": {"seed": seed}})).json()["env_id"]
                for action in (1, 2, 3, 4, 5):
                    await client.post(STEP, json=step_body(env_id, action))

        await asyncio.gather(*(one(seed) for seed in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="short runs (CI)")
    parser.add_argument("--threadpool-too", action="store_true", help="also measure --threadpool stepping")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: the cheap keep-alive client (default) or httpx")
    parser.add_argument("--no-fast-step", action="store_true", help="serve steps on the validated route only")
    args = parser.parse_args()
    kind = args.client
    extra = ("--no-fast-step",) if args.no_fast_step else ()
    seconds = 3.0 if args.small else 10.0
    envs = 60 if args.small else 500
    modes = [("async", ())] + ([("threadpool", ("--threadpool",))] if args.threadpool_too else [])
    for mode, flags in modes:
        with ServiceProcess("--max-envs", "2000", *flags, *extra) as service:
            common = {"mode": mode, "client": kind, "fast_step": not args.no_fast_step}
            rate, cpu_8 = asyncio.run(throughput(service, 8, seconds, kind=kind))
            emit("env_service_steps_per_s_8_clients", rate, "steps/s", ">= 2000", **common, cpus=os.cpu_count(),
                 service_cpu_us_per_step=round(cpu_8, 1), load_avg_1m=round(os.getloadavg()[0], 2))
            lean, _ = asyncio.run(throughput(service, 8, seconds, {"text": "false"}, kind=kind))
            emit("env_service_steps_per_s_8_clients_no_text", lean, "steps/s", None, **common,
                 note="?text=false: structured fields only (what RemoteEnv asks for)")
            samples, cpu_us = asyncio.run(latency(service, seconds / 2, kind=kind))
            emit("env_service_cpu_per_step", cpu_us, "us", "<= 500 (1e6/x = steps/s one core can serve)",
                 **common, note="service process CPU per step request, initialize excluded; robust to machine load")
            emit("env_service_step_latency_p50_1_client", statistics.median(samples) * 1000, "ms", "<= 2",
                 **common, p90_ms=round(statistics.quantiles(samples, n=10)[-1] * 1000, 3), samples=len(samples))
            if mode == "async":
                asyncio.run(hold_envs(service.url, envs))
                live = httpx.get(service.url + "/health").json()["live_envs"]
                rss, peak = service.rss_mb()
                emit(f"env_service_rss_{envs}_envs", peak, "MiB", "<= 1024 (500 envs)", live_envs=live,
                     rss_now_mib=round(rss, 1))
    emit("bench_client_peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


if __name__ == "__main__":
    main()
