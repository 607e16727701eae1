"""The built-in models' lean loss equals TRL's own loss and metrics on the same batch."""

from __future__ import annotations

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from crafter_tui.finetune.trainer.data import load_chat_jsonl, tokenize_examples
from crafter_tui.finetune.trainer.lean_loss import LeanLossSFTTrainer, shifted_loss_terms
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model
from crafter_tui.finetune.trainer.sample_data import write_jsonl
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer
from crafter_tui.finetune.trainer.train import _dataset
from tests.trainer_support import short_rows


def test_shifted_terms_supervise_only_labelled_next_tokens():
    logits = torch.zeros(1, 4, 5)
    logits[0, 1, 3] = 10.0  # position 1 predicts token 2
    labels = torch.tensor([[-100, -100, 3, -100]])
    selected, wanted, loss_sum = shifted_loss_terms(logits, labels)
    assert selected.shape == (1, 5) and wanted.tolist() == [3]
    assert loss_sum.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[0, 1:2], wanted).item())


def _trainer(cls, model, tokenizer, rows, tmp_path):
    config = SFTConfig(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, use_cpu=True,
                       report_to="none", dataset_kwargs={"skip_prepare_dataset": True}, max_length=512,
                       activation_checkpointing=False, disable_tqdm=True)
    return cls(model=model, args=config, train_dataset=_dataset(rows), processing_class=tokenizer)


def test_lean_loss_and_metrics_equal_trl_on_the_same_batch(tmp_path):
    examples = load_chat_jsonl(write_jsonl(short_rows(12, seed=3), tmp_path / "train.jsonl"))
    tokenizer = train_tokenizer([t for e in examples for t in message_texts(e.messages)], 512)
    rows, _ = tokenize_examples(tokenizer, examples, 512)
    model = build_model(BUILTIN_SIZES["crafter-tiny"], tokenizer, seed=0).train()
    reference = _trainer(SFTTrainer, model, tokenizer, rows, tmp_path)
    lean = _trainer(LeanLossSFTTrainer, model, tokenizer, rows, tmp_path)
    batch = next(iter(reference.get_train_dataloader()))
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < supervised < batch["labels"].numel() / 2, "the prompt must be masked for this test to mean anything"
    with torch.no_grad():
        expected = reference.compute_loss(model, dict(batch), num_items_in_batch=supervised)
        got = lean.compute_loss(model, dict(batch), num_items_in_batch=supervised)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    for key in ("mean_token_accuracy", "entropy", "num_tokens"):
        assert lean._metrics["train"][key][-1] == pytest.approx(reference._metrics["train"][key][-1], rel=1e-4), key
