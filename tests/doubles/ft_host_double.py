"""TEST DOUBLE: a scripted fine-tuning host (OpenAI / Synth shaped) for the job client's tests.

Not part of the product and not a trainer. It answers the OpenAI fine-tuning routes from
memory so the real ``openai`` SDK can be exercised over loopback HTTP with things a real
host does and ours never should on purpose: 429s and 5xx before answering (to prove the
client retries), a job that fails with a reason, events over several pages. Every request
is recorded (method, path, query, JSON body, auth header) so tests can assert what the
client sent, and check that keys go only where they belong.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class FineTuneHostDouble:
    """State + a FastAPI app. ``fail_next`` holds status codes answered (in order) before real replies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.next_status: str = "running"
        self.failure: str | None = None
        self.chats: list[dict[str, Any]] = []  # chat-completion bodies sent to the host's served models
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record_and_fail(request: Request, call_next):  # noqa: ANN001, ANN202
            body = await request.body()
            try:
                parsed = json.loads(body) if body and request.headers.get("content-type", "").startswith(
                    "application/json") else None
            except ValueError:
                parsed = None
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "query": dict(request.query_params), "json": parsed,
                                  "auth": request.headers.get("authorization")})
            if self.fail_next:
                status = self.fail_next.pop(0)
                return JSONResponse({"error": {"message": f"scripted {status}", "type": "server_error",
                                               "param": None, "code": None}},
                                    status_code=status, headers={"retry-after-ms": "10"})
            return await call_next(request)

        @app.post("/v1/files")
        async def upload() -> dict[str, Any]:
            return {"id": f"file-{len(self.requests)}", "object": "file", "bytes": 1, "created_at": 1,
                    "filename": "x.jsonl", "purpose": "fine-tune", "status": "processed"}

        @app.post("/v1/fine_tuning/jobs")
        async def create(request: Request) -> dict[str, Any]:
            body = await request.json()
            job_id = f"ftjob-double{len(self.jobs) + 1}"
            self.jobs[job_id] = {"id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()),
                                 "model": body["model"], "status": "queued", "fine_tuned_model": None,
                                 "training_file": body["training_file"], "hyperparameters": {},
                                 "organization_id": "org", "result_files": [], "seed": 0, "error": None}
            self.events[job_id] = [self._event(job_id, i) for i in range(7)]
            return self.jobs[job_id]

        @app.get("/v1/fine_tuning/jobs/{job_id}", response_model=None)
        async def retrieve(job_id: str) -> dict[str, Any] | JSONResponse:
            if job_id not in self.jobs:  # as OpenAI answers an unknown id
                return JSONResponse({"error": {"message": f"Could not find fine-tune job: {job_id}",
                                               "type": "invalid_request_error", "param": None, "code": None}},
                                    status_code=404)
            job = self.jobs[job_id]
            job["status"] = self.next_status
            if self.next_status == "failed":
                job["error"] = {"code": "invalid_training_file", "message": self.failure, "param": None}
            if self.next_status == "succeeded":
                job["fine_tuned_model"] = f"ft:Qwen/Qwen2.5-7B-Instruct:org-x:20250730:{job_id}"
            return job

        @app.get("/v1/fine_tuning/jobs")
        async def list_jobs() -> dict[str, Any]:
            return {"object": "list", "data": list(self.jobs.values()), "has_more": False}

        @app.get("/v1/fine_tuning/jobs/{job_id}/events")
        async def events(job_id: str, limit: int = 20, after: str | None = None) -> dict[str, Any]:
            newest_first = list(reversed(self.events[job_id]))
            start = 0
            if after:
                start = [e["id"] for e in newest_first].index(after) + 1
            page = newest_first[start:start + limit]
            return {"object": "list", "data": page, "has_more": start + limit < len(newest_first)}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            """A fine-tuned model served by the host: plays as ``openai_double.WoodcutterResponder``."""
            from tests.doubles.openai_double import WoodcutterResponder

            body = await request.json()
            self.chats.append(body)
            observation = str((body.get("messages") or [{}])[-1].get("content") or "")
            actions = WoodcutterResponder().actions(observation)
            arguments = json.dumps({"actions": actions, "reasoning": "host double"})
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{len(self.chats)}", "type": "function",
                 "function": {"name": "interact", "arguments": arguments}}]}
            return {"id": f"chatcmpl-{len(self.chats)}", "object": "chat.completion", "created": 1,
                    "model": body.get("model"), "choices": [{"index": 0, "message": message,
                                                             "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}

        @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
        async def cancel(job_id: str) -> dict[str, Any]:
            self.jobs[job_id]["status"] = "cancelled"
            return self.jobs[job_id]

        return app

    @staticmethod
    def _event(job_id: str, index: int) -> dict[str, Any]:
        if index % 2 == 0:
            return {"id": f"ev-{job_id}-{index}", "object": "fine_tuning.job.event", "created_at": 100 + index,
                    "level": "info", "message": f"message {index}", "type": "message", "data": None}
        step = index // 2 + 1
        return {"id": f"ev-{job_id}-{index}", "object": "fine_tuning.job.event", "created_at": 100 + index,
                "level": "info", "message": f"Step {step}", "type": "metrics",
                "data": {"step": step, "train_loss": 2.0 / step, "train_mean_token_accuracy": 0.5,
                         "total_steps": 3}}
