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

pytestmark = pytest.mark.filterwarnings("ignore:The train function is executing locally:UserWarning")


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
