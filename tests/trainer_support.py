"""Small chat data and a cheap TrainJob for the trainer tests (short prompts keep them fast)."""

from __future__ import annotations

from pathlib import Path

from crafter_tui.finetune.trainer import TrainJob
from crafter_tui.finetune.trainer.sample_data import scripted_conversations, write_jsonl
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer

SHORT_SYSTEM = "Play Crafter. Call interact with actions."


def short_rows(turns: int, seed: int = 0, history_turns: int = 0) -> list[dict]:
    """Scripted Crafter turns with a one-line system prompt."""
    return scripted_conversations(turns, seed=seed, history_turns=history_turns, system_prompt=SHORT_SYSTEM)


def small_job(tmp_path: Path, rows: list[dict], **overrides) -> TrainJob:
    """A crafter-tiny job over ``rows`` written to tmp_path/train.jsonl."""
    data = write_jsonl(rows, tmp_path / "train.jsonl")
    settings = {"model": "crafter-tiny", "training_file": data, "output_dir": tmp_path / "out",
                "n_epochs": 1, "batch_size": 4, "seed": 7, "max_length": 512, "threads": 1}
    settings.update(overrides)
    return TrainJob(**settings)


def rows_tokenizer(rows: list[dict], vocab_size: int = 512):
    """A built-in tokenizer fit on ``rows``' messages (what the trainer would build for them)."""
    return train_tokenizer([text for row in rows for text in message_texts(row["messages"])], vocab_size)
