"""The fine-tune service layer (what the console's job screen calls): launch, list and watch a Modal job
across polls, with a faked FunctionCall and the Volume as a local folder (no Modal servers)."""

from __future__ import annotations

import json

import modal.exception

from crafter_tui.config import AppConfig
from crafter_tui.finetune.modal_app import job_paths
from crafter_tui.finetune.modal_host import ModalHost
from crafter_tui.services.finetune import FinetuneService, LaunchRequest
from tests.ft_support import tiny_dataset
from tests.test_finetune_modal import FakeFunctionCall, FakeUpload, FolderVolume


class ScriptedVolume(FolderVolume):
    """A folder-backed Volume that also accepts uploads (copied into the folder)."""

    def batch_upload(self, force=False):  # noqa: ARG002
        self.uploads: list = []
        return FakeUpload(self.uploads)


async def test_launch_list_and_watch_a_modal_job(tmp_path):
    config = AppConfig()
    config.storage.data_dir = tmp_path / "state"
    volume = ScriptedVolume(tmp_path / "vol")
    call = FakeFunctionCall(modal.exception.TimeoutError("running"))
    spawned = type("F", (), {"spawn": lambda self, payload: type("C", (), {"object_id": "fc-1"})()})()
    host = ModalHost(config, volume=volume, function=spawned, call_from_id=lambda _: call)
    polls: list[float] = []

    async def no_wait(seconds: float) -> None:
        """Each poll writes more progress to the Volume, as a running container would."""
        polls.append(seconds)
        step = len(polls)
        with events.open("a") as handle:
            handle.write(json.dumps({"id": f"e{step}", "created_at": step, "level": "info", "type": "metrics",
                                     "message": f"Step {step}", "data": {"step": step, "train_loss": 3.0 / step,
                                                                         "total_steps": 3}}) + "\n")
        if step == 3:
            call.outcome = {"status": "succeeded", "trained_tokens": 99}

    service = FinetuneService(config, modal_host=host, clock=no_wait)
    request = LaunchRequest(data=tiny_dataset(tmp_path / "d.jsonl"), backend="modal", model="crafter-tiny",
                            epochs=1, suffix="m")
    prepared = await service.prepare(request)
    entry = await service.launch(request, prepared)
    assert entry.modal_call_id == "fc-1" and volume.uploads[0][1] == "/" + job_paths(entry.job_id)["train"]
    events = volume.root / job_paths(entry.job_id)["events"]
    events.parent.mkdir(parents=True)
    events.write_text("")

    rows = await service.list_jobs()
    assert [(r.entry.job_id, r.status) for r in rows] == [(entry.job_id, "queued")]
    kinds = [event async for event in service.watch(entry.job_id, interval=0.5)]
    metrics = [e.point.step for e in kinds if e.kind == "metrics"]
    assert metrics == [1, 2, 3]  # each event once, in order, though every poll re-reads the log
    statuses = [e.status for e in kinds if e.kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert kinds[-1].kind == "finished" and kinds[-1].info.fine_tuned_model == f"ft:crafter-tiny:m:{entry.job_id}"
    assert polls == [0.5, 0.5, 0.5]
    assert service.registry.find(entry.job_id).status == "succeeded"
