"""The lean training forward gives the full forward's supervised logits and gradients, or declines."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TrlCollator

from crafter_tui.finetune.trainer.data import load_chat_jsonl, tokenize_examples
from crafter_tui.finetune.trainer.lean_forward import (MIN_SHARED_PREFIX, shared_prefix_length, supervised_logits,
                                                       token_layout, with_shared_prefix)
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


def _model(tokenizer, layers: int, seed: int = 0, shape: str = "crafter-tiny"):
    size = dataclasses.replace(BUILTIN_SIZES[shape], num_layers=layers)
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


def _assert_lean_equals_full(model, batch, share_prefix=True):
    """Supervised logits, targets and every parameter's gradient match the full HF forward."""
    full = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), use_cache=False)
    expected_logits, expected_targets, expected_loss = shifted_loss_terms(full.logits, batch["labels"])
    expected_grads = _gradients(model, expected_loss)

    logits, targets = supervised_logits(model, batch["input_ids"], batch.get("attention_mask"), batch["labels"],
                                        share_prefix=share_prefix)
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    grads = _gradients(model, loss)

    assert torch.equal(targets, expected_targets)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert set(grads) == set(expected_grads)
    for name, expected in expected_grads.items():
        # float32 sums in another order (the prefix's rows summed early) differ by ~1e-7 of a tensor's scale
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(grads[name], expected, rtol=1e-4, atol=1e-6 * scale, msg=name)


def _shared_length(batch) -> int:
    """The prefix the lean forward computes once for ``batch`` (0: every row computes its own)."""
    layout = with_shared_prefix(token_layout(batch.get("attention_mask"), batch["labels"]), batch["input_ids"])
    return 0 if layout.prefix is None else layout.prefix.length


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_lean_forward_equals_the_full_forward(batch_and_tokenizer, layers, share_prefix):
    batch, tokenizer = batch_and_tokenizer
    assert _shared_length(batch) >= MIN_SHARED_PREFIX, "the tools line and system prompt are shared"
    _assert_lean_equals_full(_model(tokenizer, layers), batch, share_prefix)


@pytest.mark.parametrize("shape", sorted(BUILTIN_SIZES))
def test_lean_forward_equals_the_full_forward_for_every_builtin_shape(batch_and_tokenizer, shape):
    """Widths, head counts and grouped or plain attention of each size (crafter-small has no GQA), two layers deep."""
    batch, tokenizer = batch_and_tokenizer
    _assert_lean_equals_full(_model(tokenizer, 2, shape=shape), batch)


def _synthetic_batch(rows: list[tuple[list[int], list[tuple[int, int]]]], width: int | None = None) -> dict:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` from (token ids, target spans [start, end))."""
    width = width or max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for row, (ids, spans) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        for start, end in spans:
            labels[row, start:end] = input_ids[row, start:end]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _tokens(count: int, seed: int) -> list[int]:
    return torch.randint(3, 500, (count,), generator=torch.Generator().manual_seed(seed)).tolist()


SHARED = _tokens(40, seed=1)


def _different_lengths():
    """Rows sharing 40 tokens then differing, of lengths 70/55/90 (padding), one with two target spans."""
    return _synthetic_batch([(SHARED + _tokens(30, 2), [(50, 70)]),
                             (SHARED + _tokens(15, 3), [(45, 55)]),
                             (SHARED + _tokens(50, 4), [(48, 60), (75, 90)])]), 40


def _capped_by_a_target():
    """Rows sharing 40 tokens, one of which already predicts a target at position 24."""
    return _synthetic_batch([(SHARED + _tokens(20, 5), [(45, 60)]),
                             (SHARED + _tokens(25, 6), [(25, 30), (50, 65)])]), 24


def _identical_rows():
    """Three copies of one row: only the positions before its first target are shared."""
    row = (SHARED + _tokens(30, 7), [(52, 70)])
    return _synthetic_batch([row, row, row]), 51


def _capped_by_a_short_row():
    """A first row of the first 20 shared tokens only (nothing supervised), its padding the next 20 shared
    ids (a pad id can be a prompt token): only its length caps the prefix."""
    batch = _synthetic_batch([(SHARED[:20], []), (SHARED + _tokens(20, 8), [(45, 60)]),
                              (SHARED + _tokens(10, 9), [(42, 50)])])
    batch["input_ids"][0, 20:40] = torch.tensor(SHARED[20:])
    return batch, 20


def _extra_padding():
    """Padding past the longest row (a collator padding to a multiple)."""
    return _synthetic_batch([(SHARED + _tokens(20, 10), [(45, 60)]), (SHARED + _tokens(12, 11), [(41, 52)])],
                            width=80), 40


def _nothing_shared():
    """Rows differing from the first token: every row computes its own."""
    return _synthetic_batch([(_tokens(60, 12), [(40, 60)]), (_tokens(50, 13), [(30, 50)])]), 0


def _single_row():
    """One row: nothing to share with."""
    return _synthetic_batch([(SHARED + _tokens(30, 14), [(50, 70)])]), 0


def _too_short_to_pay():
    """Rows sharing fewer than MIN_SHARED_PREFIX tokens: every row computes its own."""
    start = SHARED[: MIN_SHARED_PREFIX - 1]
    return _synthetic_batch([(start + _tokens(40, 15), [(30, 47)]), (start + _tokens(30, 16), [(20, 37)])]), 0


@pytest.mark.parametrize("make_batch", [_different_lengths, _capped_by_a_target, _identical_rows,
                                        _capped_by_a_short_row, _extra_padding, _nothing_shared, _single_row,
                                        _too_short_to_pay])
@pytest.mark.parametrize("layers", [1, 2])
def test_shared_prefix_batches_equal_the_full_forward(batch_and_tokenizer, make_batch, layers):
    _, tokenizer = batch_and_tokenizer
    batch, shared = make_batch()
    assert _shared_length(batch) == shared
    _assert_lean_equals_full(_model(tokenizer, layers, seed=layers), batch)


def test_shared_prefix_length_without_an_attention_mask(batch_and_tokenizer):
    _, tokenizer = batch_and_tokenizer
    batch, _ = _identical_rows()
    del batch["attention_mask"]
    assert _shared_length(batch) == 51
    _assert_lean_equals_full(_model(tokenizer, 2), batch)


def test_shared_prefix_is_computed_once(batch_and_tokenizer):
    batch, _ = batch_and_tokenizer
    plain = token_layout(batch["attention_mask"], batch["labels"])
    prefix = shared_prefix_length(batch["input_ids"], plain)
    shared = with_shared_prefix(plain, batch["input_ids"])
    assert shared.prefix.length == prefix
    assert shared.real.numel() == plain.real.numel() - (plain.batch - 1) * prefix
    assert torch.equal(shared.targets, plain.targets)
    assert torch.equal(shared.positions[shared.supervised], plain.positions[plain.supervised])


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
