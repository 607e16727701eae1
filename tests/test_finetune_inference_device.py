"""Inference on the device the model lives on: the device and dtype choice, and every tensor the
generation loop makes following the model (checked on PyTorch's ``meta`` device, which this CPU
machine has, by recording the device of every tensor any op produces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Qwen2Config, Qwen2ForCausalLM

from crafter_tui.errors import UserError
from crafter_tui.finetune import inference
from crafter_tui.finetune.inference import (
    DEVICE_ENV_VAR,
    TRAINING_INFO_FILE,
    LoadedModel,
    choose_device,
    inference_dtype,
    load_model,
)
from tests.trainer_support import rows_tokenizer, short_rows


@pytest.fixture(scope="module")
def rows():
    return short_rows(3, seed=7, history_turns=1)


@pytest.fixture(scope="module")
def tokenizer(rows):
    return rows_tokenizer(rows)


def _model(tokenizer, dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, use_sliding_window=False)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(dtype).eval()


@pytest.fixture
def cuda(monkeypatch):
    """Pretend torch sees ``count`` CUDA devices (bfloat16-capable unless told otherwise)."""
    def pretend(count: int = 1, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    return pretend


# -- choosing the device and dtype ------------------------------------------------------------
def test_auto_picks_cuda_when_there_is_one_and_the_cpu_otherwise(cuda):
    cuda(0)
    assert choose_device(environ={}) == torch.device("cpu")
    assert choose_device("auto", environ={}) == torch.device("cpu")
    cuda(1)
    assert choose_device(environ={}) == torch.device("cuda")
    assert choose_device(environ={DEVICE_ENV_VAR: " AUTO "}) == torch.device("cuda")


def test_the_environment_or_the_argument_forces_the_device(cuda):
    cuda(2)
    assert choose_device(environ={DEVICE_ENV_VAR: "cpu"}) == torch.device("cpu")
    assert choose_device(environ={DEVICE_ENV_VAR: "cuda:1"}) == torch.device("cuda:1")
    assert choose_device("cpu", environ={DEVICE_ENV_VAR: "cuda"}) == torch.device("cpu")  # argument wins


@pytest.mark.parametrize(("value", "message"), [
    ("cuda", "no CUDA device"), ("cuda:0", "no CUDA device"), ("tpu", "unknown device"),
    ("cuda:x", "unknown device"), ("mps", "unsupported device"), ("meta", "unsupported device")])
def test_a_device_that_cannot_be_used_is_a_user_error_naming_the_variable(cuda, value, message):
    cuda(0)
    with pytest.raises(UserError, match=message) as caught:
        choose_device(environ={DEVICE_ENV_VAR: value})
    assert caught.value.where == DEVICE_ENV_VAR


def test_a_cuda_index_past_the_visible_devices_is_refused(cuda):
    cuda(1)
    with pytest.raises(UserError, match="no CUDA device 1"):
        choose_device("cuda:1", environ={})


def test_dtype_bfloat16_for_pretrained_models_on_a_gpu_float32_for_built_ins_none_on_the_cpu(cuda):
    cuda(1, bf16=True)
    gpu = torch.device("cuda")
    assert inference_dtype(gpu, "Qwen/Qwen2.5-0.5B-Instruct") is torch.bfloat16
    assert inference_dtype(gpu, None) is torch.bfloat16
    assert inference_dtype(gpu, "crafter-tiny") is torch.float32
    assert inference_dtype(torch.device("cpu"), "Qwen/Qwen2.5-0.5B-Instruct") is None  # as saved, as before
    cuda(1, bf16=False)
    assert inference_dtype(gpu, "Qwen/Qwen2.5-0.5B-Instruct") is torch.float32


# -- loading --------------------------------------------------------------------------------
def _saved(tmp_path: Path, tokenizer, dtype: torch.dtype, base_model: str | None) -> Path:
    folder = tmp_path / "model"
    _model(tokenizer, dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if base_model:
        info = {"base_model": base_model, "max_length": 512}
        (folder / TRAINING_INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
    return folder


def test_on_the_cpu_weights_load_as_saved(tmp_path, tokenizer, cuda, monkeypatch):
    cuda(1)
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")  # a GPU is "there", the setting keeps the CPU
    loaded = load_model(_saved(tmp_path, tokenizer, torch.bfloat16, "Qwen/Qwen2.5-0.5B-Instruct"))
    assert loaded.device == torch.device("cpu") and loaded.model.dtype is torch.bfloat16
    assert loaded.max_length == 512


def test_load_model_puts_the_model_on_the_chosen_device_in_the_chosen_dtype(tmp_path, tokenizer, monkeypatch):
    seen = []

    def dtype_rule(device, base_model):
        seen.append((device.type, base_model))
        return torch.bfloat16

    monkeypatch.setattr(inference, "choose_device", lambda requested=None: torch.device("meta"))
    monkeypatch.setattr(inference, "inference_dtype", dtype_rule)
    loaded = load_model(_saved(tmp_path, tokenizer, torch.float32, "crafter-tiny"))
    assert seen == [("meta", "crafter-tiny")]
    assert loaded.device.type == "meta" and loaded.model.dtype is torch.bfloat16
    assert loaded._decoder is not None and loaded._decoder.device.type == "meta"
    assert all(p.device.type == "meta" for p in loaded.model.parameters())


# -- tensors follow the model -----------------------------------------------------------------
class _DeviceRecorder(TorchDispatchMode):
    """Records the device of every tensor every op returns (factories like ``torch.tensor`` too)."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: dict[str, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.devices.setdefault(value.device.type, set()).add(str(func))
        return out


@pytest.mark.parametrize("fast", [True, False])
def test_every_tensor_generation_makes_lives_on_the_model_device(tokenizer, rows, monkeypatch, fast):
    """On ``meta`` a token cannot be read, so the pick is replaced by a fixed, non-stop token."""
    loaded = LoadedModel(_model(tokenizer).to("meta"), tokenizer, Path("unused"), max_length=1024, threads=1)
    if not fast:
        loaded._decoder = None
    assert (loaded._decoder is not None) == fast
    token = next(i for i in range(len(tokenizer)) if i not in loaded.stop_ids)
    picked_on = []

    def pick(logits, temperature, generator):
        picked_on.append(logits.device.type)
        return token

    monkeypatch.setattr(LoadedModel, "_pick", staticmethod(pick))
    ids = loaded.prompt_ids(rows[0]["messages"][:-1], rows[0]["tools"], 8)
    recorder = _DeviceRecorder()
    with recorder:
        assert loaded.generate_ids(ids, 4) == ([token] * 4, 0, False)
        # a second prompt sharing a prefix: cropped cache, a prefill after cached positions (masked)
        _, reused, _ = loaded.generate_ids(ids[:-3] + [token] * 5, 4)
    assert reused > 0
    assert set(picked_on) == {"meta"}
    assert set(recorder.devices) == {"meta"}, recorder.devices


def test_seeded_sampling_uses_a_generator_on_the_model_device_and_replays(tokenizer, rows, monkeypatch):
    loaded = LoadedModel(_model(tokenizer), tokenizer, Path("unused"), max_length=1024, threads=1)
    pick = LoadedModel._pick
    generators = []

    def recording_pick(logits, temperature, generator):
        generators.append(generator)
        return pick(logits, temperature, generator)

    monkeypatch.setattr(LoadedModel, "_pick", staticmethod(recording_pick))
    ids = loaded.prompt_ids(rows[1]["messages"][:-1], rows[1]["tools"], 12)
    first, _, _ = loaded.generate_ids(ids, 12, temperature=1.0, seed=3)
    assert first and first == loaded.generate_ids(ids, 12, temperature=1.0, seed=3)[0]
    assert {g.device for g in generators} == {loaded.device}
    generators.clear()
    loaded.generate_ids(ids, 4)
    assert set(generators) == {None}  # greedy: no generator at all
