"""On a CUDA machine, the trainer and inference give the CPU's results on the GPU.

Skipped where no GPU is visible (CI has none). Run on a GPU machine with
``python -m pytest tests/test_cuda.py``. Why these exist: elsewhere the GPU paths (the trainer
choosing the card, built-in models kept in float32 there, every generation tensor on the model's
device) are checked only on PyTorch's ``meta`` device, which proves where tensors go but not that
the numbers come out right.
"""

from __future__ import annotations

import json

import pytest
import torch

from crafter_tui.finetune.inference import load_model
from crafter_tui.finetune.trainer import run_training
from tests.trainer_support import short_rows, small_job

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _train(tmp_path, rows, on_cpu: bool):
    """Train crafter-tiny to fit ``rows``; the CPU run hides the card the way a CPU-only machine would."""
    events = []
    job = small_job(tmp_path, rows, n_epochs=24, batch_size=2, learning_rate=3e-3, logging_steps=1)
    torch.cuda.reset_peak_memory_stats()  # outside the patch: these calls need the card visible
    with pytest.MonkeyPatch.context() as patch:
        if on_cpu:
            patch.setattr(torch.cuda, "is_available", lambda: False)
        result = run_training(job, events.append)
    used_gpu = torch.cuda.max_memory_allocated() > 0
    losses = [e.data["train_loss"] for e in events if e.type == "metrics" and "train_loss" in (e.data or {})]
    return losses, result, used_gpu


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same job (seed, data, hyperparameters) trained on the CPU and on the GPU."""
    rows = short_rows(8, seed=3)
    cpu = _train(tmp_path_factory.mktemp("cpu"), rows, on_cpu=True)
    gpu = _train(tmp_path_factory.mktemp("gpu"), rows, on_cpu=False)
    return rows, cpu, gpu


def test_training_on_the_gpu_follows_the_cpu_run(both):
    _, (cpu_losses, _, cpu_used_gpu), (gpu_losses, gpu_result, gpu_used_gpu) = both
    assert not cpu_used_gpu and gpu_used_gpu
    assert len(cpu_losses) == len(gpu_losses) == 96
    # same initial weights and batches: the first steps agree to float rounding (later ones drift apart slowly)
    torch.testing.assert_close(torch.tensor(gpu_losses[:5]), torch.tensor(cpu_losses[:5]), rtol=1e-3, atol=1e-4)
    assert gpu_losses[-1] < 0.2 * gpu_losses[0]
    assert (gpu_result.model_path / "model.safetensors").is_file()
    info = json.loads((gpu_result.model_path / "crafter_tui_training.json").read_text())
    assert info["base_model"] == "crafter-tiny"


def _replies(model, rows, **sampling) -> list[str]:
    out = []
    for row in rows:
        reply = model.chat(row["messages"][:-1], row.get("tools"), max_tokens=48, **sampling)
        calls = [call["function"] for call in reply.tool_calls or []]  # call ids are random
        out.append(json.dumps(calls) if calls else f"content: {reply.content}")
    return out


def test_a_model_served_from_the_gpu_answers_as_on_the_cpu(both):
    rows, _, (_, gpu_result, _) = both
    path = gpu_result.model_path
    on_gpu, on_cpu = load_model(path, device="cuda"), load_model(path, device="cpu", threads=1)
    assert on_gpu.device.type == "cuda" and next(on_gpu.model.parameters()).dtype == torch.float32
    greedy = _replies(on_gpu, rows)
    assert greedy == _replies(on_cpu, rows)
    assert all(reply.startswith('[{"name": "interact"') for reply in greedy)
    # a seeded sampled reply replays on the GPU (its generator lives there)
    assert _replies(on_gpu, rows[:3], temperature=1.0, seed=5) == _replies(on_gpu, rows[:3], temperature=1.0, seed=5)
