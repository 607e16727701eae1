"""``crafter-tui finetune / jobs / models`` against our service on loopback (TEST DOUBLE trainer, for speed)."""

from __future__ import annotations

import io
import json
import shlex

import httpx
import pytest

from crafter_tui.cli import main
from crafter_tui.cli.finetune import confirm
from crafter_tui.errors import UserError
from crafter_tui.finetune.prepare import PrepareRequest, prepare_dataset
from tests.ft_support import double_service, sft_example, tiny_dataset, write_dataset


@pytest.fixture()
def service(tmp_path, monkeypatch):
    srv = double_service(tmp_path, monkeypatch, steps=4)
    yield srv
    srv.stop()


def test_finetune_local_watch_test_and_usage(service, tmp_path, capsys):
    data = tiny_dataset(tmp_path / "crafter_sft.jsonl", n=30)
    code = main(["finetune", str(data), "--backend", "local", "--model", "crafter-tiny", "--epochs", "2",
                 "--batch-size", "2", "--learning-rate", "1e-3", "--suffix", "cli", "--subset", "20",
                 "--validation-split", "0.25", "--watch", "--yes", "--interval", "0.1", "--test-observations", "2"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert (tmp_path / "crafter_sft.subset-20.jsonl").is_file()
    assert (tmp_path / "crafter_sft.subset-20.train-15.jsonl").is_file()
    assert (tmp_path / "crafter_sft.subset-20.valid-5.jsonl").is_file()
    assert "tokens:" in out and "cost:       $0.00" in out
    assert "step 4/4  loss 0.7500" in out
    assert "model test: 2/2" in out and out.count("PASS seed") == 2
    assert "curl " in out and "from openai import OpenAI" in out
    model = next(line.split()[-1] for line in out.splitlines() if line.startswith("model:"))
    curl_body = shlex.split(next(line for line in out.splitlines() if line.startswith("  -d ")))[1]
    answer = httpx.post(service.base_url + "/chat/completions", json=json.loads(curl_body)).json()
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "interact"
    assert model.startswith("ft:crafter-tiny:cli:ftjob-")
    job_id = model.rsplit(":", 1)[1]

    assert main(["jobs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["job_id"] == job_id and listed[0]["status"] == "succeeded"
    assert listed[0]["fine_tuned_model"] == model
    assert main(["jobs", "show", job_id[:12]]) == 0
    shown = capsys.readouterr().out
    assert "status:     succeeded" in shown and "checkpoint: step 4" in shown and "loss:" in shown
    assert main(["jobs", "events", job_id]) == 0
    assert "The job has successfully completed." in capsys.readouterr().out
    assert main(["models"]) == 0
    assert model in capsys.readouterr().out
    assert main(["jobs", "cancel", job_id]) == 2  # already finished: a one-line error, not a traceback
    assert "cannot be cancelled" in capsys.readouterr().err

    # the training curve comes from the host that ran the job, even after the configured URL moved on
    config = tmp_path / "crafter_config.toml"
    config.write_text(config.read_text().replace(service.base_url, "http://127.0.0.1:9"))
    analysis = tmp_path / "training.json"
    assert main(["analyze", "training", "--job-ids", job_id, "--output", str(analysis)]) == 0, capsys.readouterr().err
    progress = json.loads(analysis.read_text())["jobs"][0]
    assert progress["job_id"] == job_id and [p["step"] for p in progress["points"]] == [1, 2, 3, 4]


def test_dataset_with_errors_is_refused_before_upload(service, tmp_path, capsys):
    rows = [sft_example(f"obs {i}", ["do"]) for i in range(12)]
    path = write_dataset(tmp_path / "bad.jsonl", rows)
    lines = path.read_text().splitlines()
    lines[3] = '{"messages": [{"role": "user", "content": "no reply"}]}'
    lines[7] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    code = main(["finetune", str(path), "--backend", "local", "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert "line 4" in err and "line 8" in err and "nothing was uploaded" in err
    files = httpx.get(service.base_url + "/files").json()["data"]
    assert files == []  # nothing reached the host


def test_launch_without_yes_on_a_pipe_is_refused():
    with pytest.raises(UserError, match="pass --yes"):
        confirm(False, stdin=io.StringIO("y\n"))
    confirm(True, stdin=io.StringIO(""))


def test_subset_sample_is_seeded_and_estimates_per_backend(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", [sft_example(f"obs {i}", ["do"]) for i in range(40)])
    first = prepare_dataset(PrepareRequest(data=data, backend="openai", model="gpt-4o-mini-2024-07-18",
                                           subset=10, subset_mode="sample", seed=3, epochs=3))
    again = prepare_dataset(PrepareRequest(data=data, backend="openai", model="gpt-4o-mini-2024-07-18",
                                           subset=10, subset_mode="sample", seed=3, epochs=3))
    assert first.train_path.name == "d.subset-10-sample-s3.jsonl"
    assert first.train_path.read_bytes() == again.train_path.read_bytes()
    assert first.estimate.examples == 10 and first.estimate.total_tokens == 3 * first.estimate.tokens_per_epoch
    assert first.estimate.cost_usd is not None and first.estimate.cost_usd > 0
    gpu = prepare_dataset(PrepareRequest(data=data, backend="synth", model="Qwen/Qwen2.5-7B-Instruct", epochs=2))
    assert gpu.estimate.seconds and gpu.estimate.cost_usd is not None
    with pytest.raises(UserError, match="not found"):
        prepare_dataset(PrepareRequest(data=tmp_path / "missing.jsonl", backend="local", model="crafter-tiny"))
