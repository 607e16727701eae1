"""The Modal host without Modal servers: the job body through ``.local()``, polling through a fake FunctionCall."""

from __future__ import annotations

import json
from pathlib import Path

import modal.exception
import pytest

from crafter_tui.config import AppConfig
from crafter_tui.finetune.client import JobSpec
from crafter_tui.finetune.modal_app import job_paths, train
from crafter_tui.finetune.modal_host import ModalHost
from crafter_tui.finetune.registry import JobEntry
from tests.doubles.ft_trainer_double import TRAINER
from tests.ft_support import tiny_dataset

pytestmark = [pytest.mark.filterwarnings("ignore:The train function is executing locally:UserWarning"),
              pytest.mark.filterwarnings("ignore:The serve function is executing locally:UserWarning")]


class FakeFunctionCall:
    """Stands in for ``modal.FunctionCall``: ``get(timeout=0)`` raises or returns what the test says."""

    def __init__(self, outcome):
        self.outcome = outcome
        self.cancelled = False
        self.timeouts = []

    def get(self, timeout=None):
        self.timeouts.append(timeout)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self):
        self.cancelled = True


class FolderVolume:
    """Stands in for ``modal.Volume`` on the client side, backed by a local folder."""

    def __init__(self, root: Path):
        self.root = root

    def read_file(self, path):
        full = self.root / path.lstrip("/")
        if not full.exists():
            raise modal.exception.NotFoundError(path)
        yield full.read_bytes()

    def listdir(self, path):
        full = self.root / path.lstrip("/")
        if not full.exists():
            raise modal.exception.NotFoundError(path)
        return [type("Entry", (), {"path": str(Path(path) / p.name)})() for p in full.iterdir()]


def _payload(job_id: str) -> dict:
    return {"job_id": job_id, "trainer": TRAINER, "has_validation": False,
            "train_job": {"model": "crafter-tiny", "n_epochs": 1, "lora_r": 8}}


def test_job_body_runs_through_local(tmp_path, monkeypatch):
    monkeypatch.setenv("CRAFTER_TUI_MODAL_ROOT", str(tmp_path))
    monkeypatch.setenv("FT_DOUBLE_STEPS", "4")
    paths = job_paths("modaljob-1")
    (tmp_path / paths["dir"]).mkdir(parents=True)
    tiny_dataset(tmp_path / paths["train"])
    result = train.local(_payload("modaljob-1"))
    assert result["status"] == "succeeded" and result["model_dir"] == paths["model"]
    assert (tmp_path / paths["model"]).is_dir()
    assert json.loads((tmp_path / paths["result"]).read_text())["status"] == "succeeded"
    host = ModalHost(AppConfig(), volume=FolderVolume(tmp_path), call_from_id=lambda _: FakeFunctionCall(result))
    entry = JobEntry(job_id="modaljob-1", host="modal", model="crafter-tiny", modal_call_id="fc-1")
    events = host.events(entry)
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == [1, 2, 3, 4]
    assert [c.step for c in host.checkpoints(entry)] == [2, 4]
    info = host.poll(entry)
    assert info.status == "succeeded" and info.fine_tuned_model == "ft:crafter-tiny:crafter:modaljob-1"


def test_job_body_resumes_after_a_retry_and_reports_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("CRAFTER_TUI_MODAL_ROOT", str(tmp_path))
    paths = job_paths("modaljob-2")
    (tmp_path / paths["out"] / "checkpoint-2").mkdir(parents=True)  # what a preempted container left
    tiny_dataset(tmp_path / paths["train"])
    monkeypatch.setenv("FT_DOUBLE_STEPS", "4")
    assert train.local(_payload("modaljob-2"))["status"] == "succeeded"
    messages = [json.loads(line)["message"] for line in (tmp_path / paths["events"]).read_text().splitlines()]
    assert "Modal container started (resuming)." in messages
    assert any("resume from step 2" in m for m in messages)
    monkeypatch.setenv("FT_DOUBLE_FAIL", "bad data")
    failed = train.local(_payload("modaljob-3"))
    assert failed["status"] == "failed" and "bad data" in failed["error"]


@pytest.mark.parametrize(("outcome", "status", "error_part"), [
    (modal.exception.TimeoutError("not ready"), "queued", None),
    (modal.exception.FunctionTimeoutError("too slow"), "failed", "timeout"),
    (modal.exception.OutputExpiredError("gone"), "failed", "expired"),
    (RuntimeError("boom in container"), "failed", "boom in container"),
    ({"status": "failed", "error": "ValueError: no rows"}, "failed", "no rows"),
])
def test_polling_maps_modal_exceptions(tmp_path, outcome, status, error_part):
    call = FakeFunctionCall(outcome)
    host = ModalHost(AppConfig(), volume=FolderVolume(tmp_path), call_from_id=lambda _: call)
    info = host.poll(JobEntry(job_id="modaljob-9", host="modal", model="m", modal_call_id="fc-9"))
    assert call.timeouts == [0]
    assert info.status == status
    if error_part:
        assert error_part in info.error
    else:
        assert info.error is None


def test_polling_running_when_events_exist_and_expired_output_falls_back_to_volume(tmp_path):
    paths = job_paths("modaljob-5")
    (tmp_path / paths["dir"]).mkdir(parents=True)
    (tmp_path / paths["events"]).write_text(json.dumps({"id": "e1", "created_at": 1, "message": "hi"}) + "\n")
    entry = JobEntry(job_id="modaljob-5", host="modal", model="m", modal_call_id="fc")
    running = ModalHost(AppConfig(), volume=FolderVolume(tmp_path),
                        call_from_id=lambda _: FakeFunctionCall(modal.exception.TimeoutError("x")))
    assert running.poll(entry).status == "running"
    (tmp_path / paths["result"]).write_text(json.dumps({"status": "succeeded", "trained_tokens": 5}))
    expired = ModalHost(AppConfig(), volume=FolderVolume(tmp_path),
                        call_from_id=lambda _: FakeFunctionCall(modal.exception.OutputExpiredError("x")))
    info = expired.poll(entry)
    assert info.status == "succeeded" and info.trained_tokens == 5


class FakeUpload:
    def __init__(self, sink):
        self.sink = sink

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def put_file(self, local, remote):
        self.sink.append((local, remote))


def test_launch_uploads_then_spawns_and_cancel_cancels(tmp_path):
    uploads: list = []
    spawned: list = []
    volume = type("V", (), {"batch_upload": lambda self, force=False: FakeUpload(uploads)})()

    class FakeFunction:
        def spawn(self, payload):
            spawned.append(payload)
            return type("Call", (), {"object_id": "fc-abc"})()

    call = FakeFunctionCall(modal.exception.TimeoutError("x"))
    host = ModalHost(AppConfig(), volume=volume, function=FakeFunction(), call_from_id=lambda _: call)
    data = tiny_dataset(tmp_path / "d.jsonl")
    entry = host.launch(data, JobSpec(model="Qwen/Qwen2.5-7B-Instruct", training_file="-", n_epochs=2, lora_r=16))
    assert entry.modal_call_id == "fc-abc" and entry.host == "modal"
    assert uploads == [(str(data), "/" + job_paths(entry.job_id)["train"])]
    assert spawned[0]["train_job"] == {"model": "Qwen/Qwen2.5-7B-Instruct", "n_epochs": 2, "lora_r": 16}
    assert host.cancel(entry).status == "cancelled" and call.cancelled


def test_serve_plays_what_modal_trained_from_the_volume(tmp_path, monkeypatch, capsys):
    """The serving app over a local Volume folder: ``serve.local()`` (no Modal servers) lists the trained
    model under its job's name and requires the token; a rollout routed by the model's registry entry plays it."""
    import httpx
    from fastapi.testclient import TestClient

    from crafter_tui.cli import main
    from crafter_tui.finetune.modal_app import serve
    from crafter_tui.servers.modal_serve import serve_app
    from crafter_tui.finetune.registry import JobRegistry
    from tests.doubles.ft_trainer_double import INFERENCE
    from tests.ft_support import ServerThread

    volume = tmp_path / "volume"
    monkeypatch.setenv("CRAFTER_TUI_MODAL_ROOT", str(volume))
    monkeypatch.setenv("CRAFTER_TUI_SERVE_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("FT_DOUBLE_STEPS", "2")
    paths = job_paths("modaljob-s1")
    (volume / paths["dir"]).mkdir(parents=True)
    tiny_dataset(volume / paths["train"])
    assert train.local(_payload("modaljob-s1"))["fine_tuned_model"] == "ft:crafter-tiny:crafter:modaljob-s1"
    (volume / "jobs" / "modaljob-failed").mkdir()
    (volume / "jobs" / "modaljob-failed" / "result.json").write_text('{"status": "failed"}')

    monkeypatch.delenv("CRAFTER_TUI_SERVE_TOKEN", raising=False)
    with pytest.raises(Exception, match="crafter-tui-serve"):
        serve.local()  # a public endpoint without a token is refused
    monkeypatch.setenv("CRAFTER_TUI_SERVE_TOKEN", "serve-token")
    with TestClient(serve.local()) as client:
        assert client.get("/v1/models").status_code == 401
        listed = client.get("/v1/models", headers={"Authorization": "Bearer serve-token"}).json()
        served = [m["id"] for m in listed["data"]]
        assert "ft:crafter-tiny:crafter:modaljob-s1" in served and not [m for m in served if "failed" in m]

    # evaluation routes a Modal-trained model to the serve function (here over loopback, with the test inference)
    server = ServerThread(serve_app(volume, tmp_path / "work2", inference=INFERENCE)).start()
    try:
        JobRegistry.from_data_dir(tmp_path / "state").save(JobEntry(
            job_id="modaljob-s1", host="modal", model="crafter-tiny", status="succeeded",
            fine_tuned_model="ft:crafter-tiny:crafter:modaljob-s1", modal_call_id="fc-1"))
        config = tmp_path / "crafter_config.toml"
        config.write_text(f'[finetune]\nmodal_serve_url = "{server.base_url.removesuffix("/v1")}"\n'
                          f'modal_serve_token = "serve-token"\n[storage]\ndata_dir = "{tmp_path / "state"}"\n')
        assert main(["--config", str(config), "rollout", "--model", "ft:crafter-tiny:crafter:modaljob-s1",
                     "--episodes", "1", "--max-turns", "2", "--out", str(tmp_path / "traces"), "--json"]) == 0
        captured = capsys.readouterr()
        assert f"trained on Modal, played at {server.base_url}" in captured.err
        assert json.loads(captured.out)["failed"] == 0 and json.loads(captured.out)["episodes"] == 1
        answer = httpx.post(server.base_url + "/chat/completions", headers={"Authorization": "Bearer serve-token"},
                            json={"model": "ft:crafter-tiny:crafter:modaljob-s1", "messages": [
                                {"role": "user", "content": "hi"}], "tools": [
                                {"type": "function", "function": {"name": "interact", "parameters": {}}}]})
        assert answer.status_code == 200
    finally:
        server.stop()
