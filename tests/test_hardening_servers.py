"""Issue 23, the two HTTP services: what they accept is what they can run, bodies have a limit, cross-site
calls are refused without a token, and with one every route but /health needs it."""

from __future__ import annotations

import socket

import httpx
import pytest

from crafter_tui.servers.env_server import BackgroundEnvService, EnvServiceSettings
from crafter_tui.servers.ft_server import ServeSettings, create_app
from crafter_tui.servers.guard import loopback_origin
from tests.doubles.ft_trainer_double import INFERENCE, TRAINER
from tests.ft_support import REPO_ROOT, ServerThread, tiny_dataset


@pytest.fixture()
def ft(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    settings = ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE, poll_interval=0.05,
                             max_upload_bytes=64 * 1024, max_body_bytes=32 * 1024)
    server = ServerThread(create_app(settings)).start()
    with httpx.Client(base_url=server.base_url.removesuffix("/v1"), timeout=30) as http:
        yield http, settings
    server.stop()


def _upload(http: httpx.Client, data: bytes) -> httpx.Response:
    return http.post("/v1/files", files={"file": ("d.jsonl", data)}, data={"purpose": "fine-tune"})


@pytest.mark.parametrize("hyper, field", [
    ({"n_epochs": 1_000_000_000}, "n_epochs"),
    ({"n_epochs": -1}, "n_epochs"),
    ({"n_epochs": 0}, "n_epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"learning_rate_multiplier": 0}, "learning_rate_multiplier"),
])
def test_hyperparameters_out_of_range_are_a_400_naming_the_field(ft, tmp_path, hyper, field):
    http, _ = ft
    file_id = _upload(http, tiny_dataset(tmp_path / "d.jsonl").read_bytes()).json()["id"]
    for body in ({"hyperparameters": hyper},
                 {"method": {"type": "supervised", "supervised": {"hyperparameters": hyper}}}):
        answer = http.post("/v1/fine_tuning/jobs", json={"model": "crafter-tiny", "training_file": file_id, **body})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"].endswith(f"hyperparameters.{field}")
    assert http.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing was queued


def test_base_model_must_be_known_or_under_the_models_folder(ft, tmp_path):
    http, settings = ft
    file_id = _upload(http, tiny_dataset(tmp_path / "d.jsonl").read_bytes()).json()["id"]
    models = settings.data_dir / "models"
    (models / "mine").mkdir(parents=True)
    for model in ("/etc", str(models / ".." / "files"), str(models), "no-such-model", "../../etc"):
        answer = http.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": file_id})
        assert answer.status_code == 400, (model, answer.text)
        assert answer.json()["error"]["param"] == "model" and "Unknown base model" in answer.json()["error"]["message"]
    assert http.get("/v1/fine_tuning/jobs").json()["data"] == []
    for model in ("crafter-tiny", str(models / "mine")):
        answer = http.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": file_id})
        assert answer.status_code == 200, answer.text


def test_uploads_and_bodies_over_the_limit_are_a_413(ft, tmp_path):
    http, settings = ft
    line = tiny_dataset(tmp_path / "d.jsonl").read_bytes().splitlines(keepends=True)[0]
    big = line * (settings.max_upload_bytes // len(line) + 2)
    answer = _upload(http, big)
    assert answer.status_code == 413 and answer.json()["error"]["code"] in ("file_too_large", "body_too_large")
    assert list((settings.data_dir / "files").glob("*")) == []  # nothing of it was kept

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(4):
            yield b"x" * (settings.max_body_bytes // 2)

    streamed = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    declared = http.post("/v1/chat/completions", content=b"{" + b" " * (settings.max_body_bytes + 10) + b"}",
                         headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"
    assert _upload(http, line * 3).status_code == 200  # under the limit: stored


def test_upload_is_streamed_to_disk_not_read_whole(ft, tmp_path, monkeypatch):
    from starlette.datastructures import UploadFile

    async def refuse(*_args, **_kwargs):
        raise AssertionError("the upload was read whole into memory")

    monkeypatch.setattr(UploadFile, "read", refuse)
    http, settings = ft
    answer = _upload(http, tiny_dataset(tmp_path / "d.jsonl").read_bytes())
    assert answer.status_code == 200, answer.text


def test_tokenless_services_refuse_foreign_origins(ft):
    http, _ = ft
    foreign = {"origin": "https://evil.example", "content-type": "text/plain"}
    answer = http.post("/v1/files", content=b"x", headers=foreign)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_site_refused"
    assert http.post("/v1/fine_tuning/jobs", content=b"{}", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert http.get("/v1/fine_tuning/jobs", headers={"origin": "http://127.0.0.1:3000"}).status_code == 200
    with BackgroundEnvService(EnvServiceSettings(port=0, max_envs=3)) as svc, \
            httpx.Client(base_url=svc.base_url, timeout=10) as env:
        simple_post = env.post("/env/CrafterClassic/initialize", content=b'{"seed": 1}', headers=foreign)
        assert simple_post.status_code == 403
        assert env.get("/health").json()["live_envs"] == 0
        assert env.post("/env/CrafterClassic/initialize", json={"seed": 1},
                        headers={"origin": "http://localhost:8080"}).status_code == 200
    assert loopback_origin("http://[::1]:80") and not loopback_origin("http://127.0.0.1.evil.com")


def test_with_a_token_every_route_but_health_needs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    settings = ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE, token="s3cret")
    server = ServerThread(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.base_url.removesuffix("/v1"), timeout=10) as http:
            for path in ("/docs", "/openapi.json", "/redoc", "/v1/models"):
                assert http.get(path).status_code == 401, path
                assert http.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200, path
            assert http.get("/health").status_code == 200
    finally:
        server.stop()


def _raw_post(port: int, path: str, headers: str, body_chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # refused early: the server closed the connection
            pass
        return sock.recv(65536)


def test_env_service_refuses_big_bodies_before_buffering():
    with BackgroundEnvService(EnvServiceSettings(port=0, max_envs=3, max_body_bytes=4096)) as svc:
        port = int(svc.base_url.rsplit(":", 1)[1])
        for path in ("/env/CrafterClassic/step", "/env/CrafterClassic/initialize"):
            declared = _raw_post(port, path, "Content-Type: application/json\r\nContent-Length: 268435456\r\n", [])
            assert declared.startswith(b"HTTP/1.1 413"), declared[:80]
            chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
            streamed = _raw_post(port, path, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                                 [chunk] * 4 + [b"0\r\n\r\n"])
            assert streamed.startswith(b"HTTP/1.1 413"), streamed[:80]
        with httpx.Client(base_url=svc.base_url, timeout=10) as http:
            assert http.post("/env/CrafterClassic/initialize", json={"seed": 3}).status_code == 200


def test_a_deep_training_file_fails_its_job_with_the_line_not_a_500(ft, tmp_path):
    http, _ = ft
    data = tiny_dataset(tmp_path / "d.jsonl").read_bytes() + b"[" * 1500 + b"]" * 1500 + b"\n"
    file_id = _upload(http, data).json()["id"]
    job = http.post("/v1/fine_tuning/jobs", json={"model": "crafter-tiny", "training_file": file_id})
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "failed" and "line 13: not valid JSON" in job.json()["error"]["message"]


def test_the_trainer_reads_a_deep_line_as_a_user_error(tmp_path):
    from crafter_tui.errors import UserError
    from crafter_tui.finetune.trainer.data import load_chat_jsonl

    path = tiny_dataset(tmp_path / "d.jsonl")
    path.write_bytes(path.read_bytes() + b"[" * 1500 + b"]" * 1500 + b"\n")
    with pytest.raises(UserError, match="d.jsonl:13: not valid JSON"):
        load_chat_jsonl(path)
