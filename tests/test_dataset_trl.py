"""An exported file loads unchanged in Hugging Face ``datasets`` and goes through TRL's chat-template step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crafter_tui.dataset.export import export_selection
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import small_store

datasets = pytest.importorskip("datasets")
trl_data = pytest.importorskip("trl.data_utils")
tokenizer_module = pytest.importorskip("crafter_tui.finetune.trainer.tokenizer")


@pytest.mark.parametrize("text_actions", [False, True])
def test_trl_applies_the_chat_template_to_every_exported_example(tmp_path: Path, text_actions: bool) -> None:
    store = TraceStore.open(small_store(tmp_path / "t"), turns=True)
    path = tmp_path / "sft.jsonl"
    export_selection(store, FilterSpec(text_actions=text_actions), path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tokenizer = tokenizer_module.train_tokenizer(
        (text for row in rows for text in tokenizer_module.message_texts(row["messages"])), 600)
    dataset = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(dataset) == 17
    assert set(dataset.column_names) == ({"messages"} if text_actions else {"messages", "tools"})
    for example in dataset:
        assert trl_data.is_conversational(example)
        text = trl_data.apply_chat_template(example, tokenizer, tools=example.get("tools"))["text"]
        last = example["messages"][-1]
        calls = last.get("tool_calls")
        reply = calls[0]["function"]["arguments"] if calls else last["content"]
        assert reply in text  # the assistant's reply reaches the training text intact
