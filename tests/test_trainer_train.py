"""Training runs on crafter-tiny: falling loss, events, checkpoints, cancel + resume, determinism,
a model that answers with an interact tool call, and the LoRA path on saved weights."""

from __future__ import annotations

import json
import shutil

import pytest

from crafter_tui.finetune.inference import load_model
from crafter_tui.finetune.trainer import TrainEvent, TrainJob, run_training
from crafter_tui.finetune.trainer.train import MODEL_DIR
from crafter_tui.world.rules import ACTIONS
from tests.trainer_support import short_rows, small_job

REQUIRED_METRIC_FIELDS = {"step", "total_steps", "epoch", "train_loss", "train_mean_token_accuracy",
                          "tokens_per_second"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """crafter-tiny trained to fit 8 repetitive turns (96 short steps at 3e-3 to memorise fast; the 2x192 shape garbles a reply at 4e-3)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    rows = short_rows(8, seed=3)
    valid = short_rows(4, seed=11)
    from crafter_tui.finetune.trainer.sample_data import write_jsonl

    job = small_job(tmp_path, rows, n_epochs=24, batch_size=2, learning_rate=3e-3, save_steps=48,
                    validation_file=write_jsonl(valid, tmp_path / "valid.jsonl"), eval_steps=48, logging_steps=2)
    events: list[TrainEvent] = []
    result = run_training(job, events.append, lambda: False)
    return job, rows, events, result


def _metrics(events):
    return [e.data for e in events if e.type == "metrics"]


def test_loss_falls_and_metrics_events_have_openai_fields(trained):
    _, _, events, result = trained
    train_points = [m for m in _metrics(events) if "train_loss" in m]
    assert REQUIRED_METRIC_FIELDS <= set(train_points[0])
    assert train_points[-1]["train_loss"] < 0.2 * train_points[0]["train_loss"]
    assert train_points[-1]["total_steps"] == 96 and train_points[-1]["step"] == 96
    valid_points = [m for m in _metrics(events) if "valid_loss" in m]
    assert len(valid_points) == 2 and {"valid_loss", "valid_mean_token_accuracy"} <= set(valid_points[0])
    assert all(isinstance(e, TrainEvent) and e.message for e in events)
    assert result.final_metrics.step == 96 and result.final_metrics.valid_loss is not None
    assert not result.cancelled and result.trained_tokens > 0


def test_checkpoints_and_final_model_written(trained):
    job, _, _, result = trained
    assert [c.step for c in result.checkpoints] == [48, 96]
    for checkpoint in result.checkpoints:
        assert checkpoint.path == job.output_dir / f"checkpoint-{checkpoint.step}"
        assert (checkpoint.path / "config.json").is_file()
        assert checkpoint.metrics.train_loss is not None
    assert result.model_path == job.output_dir / MODEL_DIR
    info = json.loads((result.model_path / "crafter_tui_training.json").read_text())
    assert info["max_length"] == job.max_length


def test_trained_model_answers_with_an_interact_call(trained):
    _, rows, _, result = trained
    model = load_model(result.model_path, threads=1)
    for row in rows[:3]:
        reply = model.chat(row["messages"][:-1], row["tools"], max_tokens=64, temperature=0.0)
        assert reply.tool_calls, reply.content
        call = reply.tool_calls[0]
        assert call["type"] == "function" and call["function"]["name"] == "interact"
        arguments = json.loads(call["function"]["arguments"])
        assert arguments["actions"] and set(arguments["actions"]) <= set(ACTIONS)
        assert reply.finish_reason == "tool_calls" and reply.prompt_tokens > 0
    # the second call reused the KV of the shared prompt prefix and still answered the same way
    again = model.chat(rows[0]["messages"][:-1], rows[0]["tools"], max_tokens=64)
    first = load_model(result.model_path, threads=1).chat(rows[0]["messages"][:-1], rows[0]["tools"], max_tokens=64)
    assert again.cached_prompt_tokens > 0 and first.cached_prompt_tokens == 0
    assert again.tool_calls[0]["function"]["arguments"] == first.tool_calls[0]["function"]["arguments"]


def test_cancel_then_resume_from_last_checkpoint(tmp_path):
    job = small_job(tmp_path, short_rows(16, seed=1), n_epochs=1, batch_size=4, save_steps=2)
    steps_seen: list[int] = []

    def emit(event: TrainEvent) -> None:
        if event.type == "metrics":
            steps_seen.append(event.data["step"])

    calls = {"n": 0}

    def stop_after_three_steps() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    stopped = run_training(job, emit, stop_after_three_steps)
    assert stopped.cancelled and stopped.model_path is None
    assert (job.output_dir / "checkpoint-2").is_dir() and not (job.output_dir / MODEL_DIR).exists()
    events: list[TrainEvent] = []
    resumed = run_training(job.model_copy(update={"resume": True}), events.append, lambda: False)
    assert any("resuming from checkpoint-2" in e.message for e in events)
    resumed_steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert min(resumed_steps) >= 3 and max(resumed_steps) == 4
    assert not resumed.cancelled and (resumed.model_path / "config.json").is_file()


def test_same_seed_same_losses(tmp_path):
    rows = short_rows(8, seed=2)

    def losses(folder: str, seed: int) -> list[float]:
        events: list[TrainEvent] = []
        job = small_job(tmp_path / folder, rows, batch_size=4, logging_steps=1, seed=seed,
                        output_dir=tmp_path / folder / "out")
        run_training(job, events.append)
        return [e.data["train_loss"] for e in events if e.type == "metrics"]

    first = losses("a", 5)
    assert first == losses("b", 5)
    assert first != losses("c", 6)


def test_lora_on_saved_weights(trained, tmp_path):
    _, rows, _, result = trained
    weights = tmp_path / "base"
    shutil.copytree(result.model_path, weights)
    job = small_job(tmp_path, rows[:4], model=str(weights), batch_size=4, output_dir=tmp_path / "lora")
    events: list[TrainEvent] = []
    lora = run_training(job, events.append)
    start = next(e for e in events if e.message.startswith("Training with LoRA"))
    assert 0 < start.data["trainable_parameters"] < start.data["parameters"]
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    reply = load_model(lora.model_path, threads=1).chat(rows[0]["messages"][:-1], rows[0]["tools"], max_tokens=64)
    assert reply.tool_calls and reply.tool_calls[0]["function"]["name"] == "interact"


def test_unknown_model_without_weights_is_a_user_error(tmp_path):
    from crafter_tui.errors import UserError

    job = small_job(tmp_path, short_rows(2), model="Qwen/Qwen2.5-0.5B-Instruct-not-cached")
    with pytest.raises(UserError, match="no weights found locally"):
        run_training(job, lambda e: None)


def test_train_job_defaults():
    job = TrainJob(model="crafter-small", training_file="t.jsonl", output_dir="out")
    assert job.lora.use_lora is None and job.threads is None and job.n_epochs == 3
