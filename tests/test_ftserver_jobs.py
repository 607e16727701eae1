"""The fine-tune service's job plumbing over loopback with the real ``openai`` client.

These use the TEST DOUBLE trainer (tests/doubles/ft_trainer_double.py) so queueing, cancel,
restart and the error shapes are checked in seconds; test_finetune_e2e.py uses the real one.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from crafter_tui.servers.ft_server import ServeSettings, create_app
from tests.doubles.ft_trainer_double import INFERENCE, TRAINER
from tests.ft_support import REPO_ROOT, ServerThread, tiny_dataset, wait_for


@pytest.fixture()
def double_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("FT_DOUBLE_STEPS", "6")
    monkeypatch.setenv("FT_DOUBLE_STEP_SECONDS", "0.05")
    return monkeypatch


def _settings(tmp_path, **extra):
    return ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE, poll_interval=0.05,
                         **extra)


@pytest.fixture()
def server(tmp_path, double_env):
    srv = ServerThread(create_app(_settings(tmp_path))).start()
    yield srv
    srv.stop()


def _client(srv, key="unused"):
    return openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)


def _finished(client, job_id):
    job = client.fine_tuning.jobs.retrieve(job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def test_job_runs_to_success_and_model_is_served(server, tmp_path):
    client = _client(server)
    data = tiny_dataset(tmp_path / "d.jsonl")
    uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
    assert client.files.retrieve(uploaded.id).bytes == data.stat().st_size
    job = client.fine_tuning.jobs.create(model="crafter-tiny", training_file=uploaded.id, suffix="t1",
                                         method={"type": "supervised",
                                                 "supervised": {"hyperparameters": {"n_epochs": 2}}})
    assert job.status in ("queued", "validating_files")
    done = wait_for(lambda: _finished(client, job.id), timeout=30)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:crafter-tiny:t1:{job.id}"
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3).iter_pages())
    flat = [e for page in events for e in page.data]
    assert len(flat) == len({e.id for e in flat}) and len(flat) > 6  # paginated with after, no dupes
    times = [e.created_at for e in flat]
    assert times == sorted(times, reverse=True)
    losses = sorted((e.data["step"], e.data["train_loss"]) for e in flat if e.type == "metrics")
    assert [s for s, _ in losses] == list(range(1, 7)) and losses[0][1] > losses[-1][1]
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [6, 4, 2]
    assert ckpts[0].fine_tuned_model_checkpoint.endswith(":ckpt-step-6")
    names = [m.id for m in client.models.list().data]
    assert done.fine_tuned_model in names and "crafter-tiny" in names
    from crafter_tui.agents.prompting import TOOLS

    reply = client.chat.completions.create(model=done.fine_tuned_model, tools=TOOLS,
                                           messages=[{"role": "user", "content": "obs"}])
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].function.name == "interact"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_failed_job_reason_is_reported(server, tmp_path, double_env):
    double_env.setenv("FT_DOUBLE_FAIL", "out of memory on purpose")
    client = _client(server)
    file_id = client.files.create(file=tiny_dataset(tmp_path / "d.jsonl").open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="crafter-tiny", training_file=file_id)
    done = wait_for(lambda: _finished(client, job.id), timeout=30)
    assert done.status == "failed"
    assert "out of memory on purpose" in done.error.message
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    assert any("out of memory on purpose" in m for m in messages)


def test_bad_training_file_fails_with_line_numbers(server, tmp_path):
    client = _client(server)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    file_id = client.files.create(file=bad.open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="crafter-tiny", training_file=file_id)
    assert job.status == "failed"
    assert "line 1" in job.error.message and "line 2" in job.error.message


def test_cancel_stops_a_running_job(server, tmp_path, double_env):
    double_env.setenv("FT_DOUBLE_STEPS", "400")
    client = _client(server)
    file_id = client.files.create(file=tiny_dataset(tmp_path / "d.jsonl").open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="crafter-tiny", training_file=file_id)
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "running")
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    manager = server.server.config.app.state.manager
    wait_for(lambda: not manager._procs, timeout=20)  # the worker actually stopped
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_restart_mid_job_resumes_from_checkpoint(tmp_path, double_env):
    double_env.setenv("FT_DOUBLE_STEPS", "30")
    double_env.setenv("FT_DOUBLE_STEP_SECONDS", "0.1")
    first = ServerThread(create_app(_settings(tmp_path))).start()
    client = _client(first)
    file_id = client.files.create(file=tiny_dataset(tmp_path / "d.jsonl").open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="crafter-tiny", training_file=file_id)
    wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, timeout=20)
    first.stop()
    second = ServerThread(create_app(_settings(tmp_path))).start()
    try:
        client = _client(second)
        done = wait_for(lambda: _finished(client, job.id), timeout=30)
        assert done.status == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=500).data]
        assert any("resuming from checkpoint-" in m for m in messages)
        resumed = [m for m in messages if m.startswith("double trainer") and "resume from step 0" not in m]
        assert resumed, "the second worker did not resume from a checkpoint"
    finally:
        second.stop()


def test_errors_have_openai_shape_and_status(server):
    with httpx.Client(base_url=server.base_url.removesuffix("/v1")) as http:
        missing = http.get("/v1/fine_tuning/jobs/ftjob-nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        bad = http.post("/v1/fine_tuning/jobs", json={"model": "crafter-tiny"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "training_file"
        typo = http.post("/v1/fine_tuning/jobs", json={"model": "m", "training_file": "file-x", "n_epoch": 3})
        assert typo.status_code == 400 and "n_epoch" in typo.json()["error"]["message"]
        no_file = http.post("/v1/fine_tuning/jobs", json={"model": "m", "training_file": "file-nope"})
        assert no_file.status_code == 404
        traversal = http.get("/v1/files/..%2F..%2Fetc")
        assert traversal.status_code == 404
        junk = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert junk.status_code == 400 and set(junk.json()["error"]) == {"message", "type", "param", "code"}
        unknown_model = http.post("/v1/chat/completions", json={"model": "ft:x:y", "messages": [
            {"role": "user", "content": "hi"}]})
        assert unknown_model.status_code == 404 and unknown_model.json()["error"]["param"] == "model"
        bad_role = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": 5}]})
        assert bad_role.status_code == 400 and "messages[0].role" in bad_role.json()["error"]["message"]
        bad_purpose = http.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"})
        assert bad_purpose.status_code == 400
        assert http.get("/nowhere").json()["error"]["code"] == "not_found"


def test_bearer_token_required_when_set(tmp_path, double_env):
    srv = ServerThread(create_app(_settings(tmp_path, token="s3cret-token"))).start()
    try:
        with pytest.raises(openai.AuthenticationError):
            _client(srv, key="wrong").models.list()
        assert _client(srv, key="s3cret-token").models.list().data
        assert httpx.get(srv.base_url.removesuffix("/v1") + "/health").status_code == 200
    finally:
        srv.stop()
    leaked = [p for p in (tmp_path / "svc").rglob("*") if p.is_file() and b"s3cret-token" in p.read_bytes()]
    assert not leaked


def test_files_list_content_delete_and_imported_models(server, tmp_path):
    client = _client(server)
    data = tiny_dataset(tmp_path / "d.jsonl")
    uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
    assert [f.id for f in client.files.list().data] == [uploaded.id]
    assert client.files.content(uploaded.id).read() == data.read_bytes()
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    folder = tmp_path / "svc" / "models" / "from-modal"
    folder.mkdir(parents=True)
    (folder / "served_name.txt").write_text("ft:Qwen/Qwen2.5-0.5B-Instruct:org:x:modaljob-1\n")
    names = [m.id for m in client.models.list().data]
    assert "ft:Qwen/Qwen2.5-0.5B-Instruct:org:x:modaljob-1" in names
    reply = client.chat.completions.create(model="ft:Qwen/Qwen2.5-0.5B-Instruct:org:x:modaljob-1",
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "no tools given"


def test_non_loopback_without_token_warns():
    from crafter_tui.servers.ft_server import warn_if_exposed

    assert warn_if_exposed(ServeSettings(data_dir="/tmp/x", host="0.0.0.0"))
    assert warn_if_exposed(ServeSettings(data_dir="/tmp/x", host="0.0.0.0", token="t")) is None
    assert warn_if_exposed(ServeSettings(data_dir="/tmp/x", host="127.0.0.1")) is None
    assert warn_if_exposed(ServeSettings(data_dir="/tmp/x", host="::1")) is None


def test_qlora_is_refused_at_create_never_trained_as_plain_lora(server, tmp_path):
    """Our trainer has no 4-bit mode: a job asking for QLoRA (the Synth knob, sent by any OpenAI client)
    is a 400 naming use_qlora, and no job exists afterwards."""
    client = _client(server)
    uploaded = client.files.create(file=tiny_dataset(tmp_path / "d.jsonl").open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="crafter-tiny", training_file=uploaded.id, extra_body={
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"use_qlora": True}}}})
    error = caught.value.body
    assert error["param"] == "use_qlora" and "bitsandbytes" in error["message"]
    assert client.fine_tuning.jobs.list().data == []
