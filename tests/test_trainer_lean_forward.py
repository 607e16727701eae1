"""The lean training forward gives the full forward's supervised logits and gradients, or declines."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TrlCollator

from crafter_tui.finetune.trainer.data import load_chat_jsonl, tokenize_examples
from crafter_tui.finetune.trainer.lean_forward import supervised_logits, token_layout
from crafter_tui.finetune.trainer.lean_loss import shifted_loss_terms
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.sample_data import write_jsonl
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer
from tests.trainer_support import short_rows


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as training uses: two spinning threads on a shared 2-core box are 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def batch_and_tokenizer(tmp_path_factory):
    """Right-padded rows of different lengths, some with a history turn (two assistant spans)."""
    path = tmp_path_factory.mktemp("lean") / "train.jsonl"
    examples = load_chat_jsonl(write_jsonl(short_rows(3, seed=5) + short_rows(3, seed=6, history_turns=1), path))
    tokenizer = train_tokenizer([t for e in examples for t in message_texts(e.messages)], 512)
    rows, _ = tokenize_examples(tokenizer, examples, 512)
    collator = TrlCollator(pad_token_id=tokenizer.pad_token_id)
    batch = collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max(), "rows of different lengths: padding must be exercised"
    spans = ((batch["labels"][:, 1:] != -100) & (batch["labels"][:, :-1] == -100)).sum(1)
    assert spans.max() >= 2, "a row with two assistant turns must be exercised"
    return batch, tokenizer


def _model(tokenizer, layers: int, seed: int = 0):
    size = dataclasses.replace(BUILTIN_SIZES["crafter-tiny"], num_layers=layers)
    model = build_model(size, tokenizer, seed=seed).train()
    with torch.no_grad():  # non-trivial norms and biases, so a skipped term would show
        for name, parameter in model.named_parameters():
            if "norm" in name or "bias" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def _gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_lean_forward_equals_the_full_forward(batch_and_tokenizer, layers):
    batch, tokenizer = batch_and_tokenizer
    model = _model(tokenizer, layers)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    expected_logits, expected_targets, expected_loss = shifted_loss_terms(full.logits, batch["labels"])
    expected_grads = _gradients(model, expected_loss)

    logits, targets = supervised_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    grads = _gradients(model, loss)

    assert torch.equal(targets, expected_targets)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert set(grads) == set(expected_grads)
    for name, expected in expected_grads.items():
        torch.testing.assert_close(grads[name], expected, rtol=1e-4, atol=1e-6, msg=name)


def test_layout_counts_real_and_supervised_tokens(batch_and_tokenizer):
    batch, _ = batch_and_tokenizer
    layout = token_layout(batch["attention_mask"], batch["labels"])
    assert layout.real.numel() == int(batch["attention_mask"].sum())
    assert layout.supervised.numel() == int((batch["labels"][:, 1:] != -100).sum())


def test_left_padding_and_unsupported_models_fall_back(batch_and_tokenizer):
    batch, tokenizer = batch_and_tokenizer
    left_mask = batch["attention_mask"].flip(1)
    assert token_layout(left_mask, batch["labels"]) is None
    model = _model(tokenizer, 2)
    model.config.attention_dropout = 0.1
    assert supervised_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"]) is None
    nothing = torch.full_like(batch["labels"], -100)
    assert token_layout(batch["attention_mask"], nothing) is None
