"""The job client against a scripted fine-tuning host (TEST DOUBLE) over loopback with the real SDK."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from pydantic import SecretStr

from crafter_tui.cli import main
from crafter_tui.config import AppConfig, load_config
from crafter_tui.errors import UserError
from crafter_tui.finetune.client import FineTuneClient, JobSpec
from crafter_tui.finetune.hosts import host_from_config
from crafter_tui.finetune.registry import JobEntry, JobRegistry
from crafter_tui.services.finetune import FinetuneService
from tests.doubles.ft_host_double import FineTuneHostDouble
from tests.ft_support import ServerThread, tiny_dataset

OPENAI_KEY = "sk-test-OPENAI-0123456789"
SYNTH_KEY = "sk-test-SYNTH-9876543210"


@pytest.fixture()
def host_double():
    double = FineTuneHostDouble()
    server = ServerThread(double.app).start()
    double.base_url = server.base_url
    yield double
    server.stop()


def _config(double, tmp_path) -> AppConfig:
    config = AppConfig()
    config.openai.base_url = double.base_url
    config.openai.api_key = SecretStr(OPENAI_KEY)
    config.finetune.synth_base_url = double.base_url
    config.finetune.synth_api_key = SecretStr(SYNTH_KEY)
    config.storage.data_dir = tmp_path / "state"
    return config


def test_429_and_5xx_are_retried(host_double, tmp_path):
    client = FineTuneClient(host_from_config("openai", _config(host_double, tmp_path)), max_retries=4)
    host_double.fail_next = [429, 503, 500]
    file_id = client.upload(tiny_dataset(tmp_path / "d.jsonl"))
    assert file_id.startswith("file-")
    assert [r["path"] for r in host_double.requests] == ["/v1/files"] * 4
    host_double.fail_next = [502]
    info = client.create(JobSpec(model="gpt-4o-mini-2024-07-18", training_file=file_id, n_epochs=2))
    assert info.status == "queued"
    host_double.fail_next = [500] * 3
    with pytest.raises(UserError, match="HTTP 500"):
        FineTuneClient(client.host, max_retries=1).retrieve(info.id)


def test_each_host_gets_its_dialect(host_double, tmp_path):
    config = _config(host_double, tmp_path)
    openai_client = FineTuneClient(host_from_config("openai", config), max_retries=0)
    openai_client.create(JobSpec(model="gpt-4o-mini", training_file="file-1", n_epochs=3, batch_size=4,
                                 learning_rate_multiplier=0.5, suffix="s", seed=7))
    body = host_double.requests[-1]["json"]
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.5}}}
    assert "training_type" not in body and body["seed"] == 7 and body["suffix"] == "s"
    assert host_double.requests[-1]["auth"] == f"Bearer {OPENAI_KEY}"
    with pytest.raises(UserError, match="multiplier"):
        openai_client.create(JobSpec(model="gpt-4o-mini", training_file="f", learning_rate=1e-4))
    with pytest.raises(UserError, match="LoRA"):
        openai_client.create(JobSpec(model="gpt-4o-mini", training_file="f", lora_r=8))

    synth = FineTuneClient(host_from_config("synth", config), max_retries=0)
    synth.upload(tiny_dataset(tmp_path / "d.jsonl"))
    assert host_double.requests[-1]["query"] == {"purpose": "fine-tune"}
    synth.create(JobSpec(model="Qwen/Qwen2.5-7B-Instruct", training_file="file-1", n_epochs=3, batch_size=4,
                         learning_rate=5e-5, use_qlora=True, lora_r=16, lora_alpha=32, lora_dropout=0.05))
    body = host_double.requests[-1]["json"]
    assert body["training_type"] == "sft" and "method" not in body
    assert body["hyperparameters"] == {"n_epochs": 3, "batch_size": 4, "learning_rate": 5e-5, "use_qlora": True,
                                       "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
    assert host_double.requests[-1]["auth"] == f"Bearer {SYNTH_KEY}"


def test_events_are_paged_and_metrics_parsed(host_double, tmp_path):
    client = FineTuneClient(host_from_config("synth", _config(host_double, tmp_path)), max_retries=0)
    job = client.create(JobSpec(model="m", training_file="file-1"))
    events = client.events(job.id, page_size=2)
    assert [e.created_at for e in events] == list(range(100, 107))  # all 7, oldest first
    pages = [r for r in host_double.requests if r["path"].endswith("/events")]
    assert len(pages) == 4 and pages[1]["query"]["after"] == f"ev-{job.id}-5"
    points = client.metrics(job.id)
    assert [p.step for p in points] == [1, 2, 3] and points[0].train_loss > points[-1].train_loss
    newer = client.events(job.id, stop_at={e.id for e in events[:5]}, page_size=2)
    assert [e.created_at for e in newer] == [105, 106]


def test_failed_job_reason_is_shown_and_no_key_is_written(host_double, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    config = _config(host_double, tmp_path)
    service = FinetuneService(config)
    registry = service.registry
    client = service.client("synth")
    job = client.create(JobSpec(model="Qwen/Qwen2.5-0.5B-Instruct", training_file="file-1"))
    registry.save(JobEntry(job_id=job.id, host="synth", base_url=config.finetune.synth_base_url, model=job.model))
    host_double.next_status = "failed"
    host_double.failure = "line 3: assistant message has no content"
    rows = asyncio.run(service.list_jobs())
    assert rows[0].status == "failed" and "line 3" in rows[0].info.error
    (tmp_path / "crafter_config.toml").write_text(
        f'[finetune]\nsynth_base_url = "{host_double.base_url}"\n[storage]\ndata_dir = "{tmp_path / "state"}"\n')
    assert main(["--config", str(tmp_path / "crafter_config.toml"), "jobs", "list"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "reason: line 3: assistant message has no content" in out
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert OPENAI_KEY not in text and SYNTH_KEY not in text
    assert SYNTH_KEY not in caplog.text and OPENAI_KEY not in caplog.text and SYNTH_KEY not in out
    assert SYNTH_KEY not in repr(config) and SYNTH_KEY not in repr(host_from_config("synth", config))


def test_unreachable_host_keeps_last_known_state(tmp_path):
    config = load_config(None, environ={})
    config.finetune.synth_base_url = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    config.openai.max_retries = 0
    service = FinetuneService(config)
    service.registry.save(JobEntry(job_id="ftjob-x", host="synth", model="m", status="running"))
    row = asyncio.run(service.list_jobs())[0]
    assert row.status == "running" and "cannot reach" in row.problem


def test_registry_keeps_model_names_whole(tmp_path):
    registry = JobRegistry(tmp_path / "jobs")
    odd = "ft:qwen2-5-7b-instruct:org-x:20250730165348:my:suffix/with-slash"
    registry.save(JobEntry(job_id="ftjob-22", host="synth", model="Qwen/Qwen2.5-7B-Instruct", fine_tuned_model=odd))
    registry.save(JobEntry(job_id="ftjob-23", host="local", model="crafter-tiny"))
    assert registry.find_model(odd).job_id == "ftjob-22"
    assert registry.find_model(odd.rsplit(":", 1)[0]) is None
    assert registry.find("ftjob-22").fine_tuned_model == odd
    with pytest.raises(UserError, match="matches 2 jobs"):
        registry.find("ftjob-2")
    with pytest.raises(UserError, match="no job"):
        registry.find("nope")
    (tmp_path / "jobs" / "broken.json").write_text("{")
    entries, problems = registry.all_with_problems()
    assert len(entries) == 2 and "broken.json" in problems[0]
    with pytest.raises(UserError, match=r"1 unreadable: .*broken.json: unreadable job entry"):
        registry.find("nope")


def test_registry_entry_survives_threads_saving_it_at_once(tmp_path):
    """The jobs screen's follow and its list poll refresh one job in two threads; each saves the
    entry. With one temporary file name per process, a rename could publish the other thread's
    half-written bytes and the job vanished from the registry (seen in CI)."""
    registry = JobRegistry(tmp_path / "jobs")
    registry.save(JobEntry(job_id="ftjob-race", host="local", model="crafter-tiny"))
    barrier = threading.Barrier(9)
    failures: list[str] = []
    seen: list[tuple[int, list[str]]] = []

    def save_many(worker: int) -> None:
        barrier.wait()
        for i in range(150):  # entries of different lengths, so an overwrite leaves a broken tail
            try:
                registry.save(JobEntry(job_id="ftjob-race", host="local", model="crafter-tiny",
                                       error="x" * ((worker * 37 + i * 11) % 400) or None))
            except OSError as exc:
                failures.append(repr(exc))

    def read_many() -> None:
        barrier.wait()
        for _ in range(300):
            entries, problems = registry.all_with_problems()
            seen.append((len(entries), problems))

    threads = [threading.Thread(target=save_many, args=(w,)) for w in range(8)]
    threads.append(threading.Thread(target=read_many))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert all(count == 1 and not problems for count, problems in seen), [s for s in seen if s[0] != 1][:3]
    entries, problems = registry.all_with_problems()
    assert problems == [] and [e.job_id for e in entries] == ["ftjob-race"]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == [p.name for p in (tmp_path / "jobs").glob("*.json")]


async def test_a_flag_the_host_does_not_take_is_refused_before_upload(host_double, tmp_path):
    from crafter_tui.services.finetune import LaunchRequest

    service = FinetuneService(_config(host_double, tmp_path))
    request = LaunchRequest(data=tiny_dataset(tmp_path / "d.jsonl"), backend="openai", model="gpt-4o-mini-2024-07-18",
                            epochs=1, learning_rate=1e-4)
    prepared = await service.prepare(request)
    with pytest.raises(UserError, match="learning-rate-multiplier"):
        await service.launch(request, prepared)
    assert host_double.requests == []
