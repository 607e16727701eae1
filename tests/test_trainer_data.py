"""Tokenizer, chat template, label masks, truncation, data errors and reply parsing (no training)."""

from __future__ import annotations

import json

import pytest

from crafter_tui.agents import prompting
from crafter_tui.errors import UserError
from crafter_tui.finetune.inference import parse_reply
from crafter_tui.finetune.trainer.data import IGNORE_INDEX, load_chat_jsonl, parse_example, tokenize_example
from crafter_tui.finetune.trainer.tokenizer import train_tokenizer
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS
from tests.trainer_support import short_rows


@pytest.fixture(scope="module")
def tokenizer():
    rows = short_rows(12, history_turns=1)
    texts = [m["content"] for r in rows for m in r["messages"] if isinstance(m.get("content"), str)]
    return train_tokenizer(texts, 600)


def _assistant_text(message: dict) -> str:
    call = message["tool_calls"][0]["function"]
    return f'<tool_call>{{"name": "{call["name"]}", "arguments": {call["arguments"]}}}</tool_call><|im_end|>'


def test_every_action_and_achievement_round_trips(tokenizer):
    for word in [*ACTIONS, *ACHIEVEMENTS, "<tool_call>", "</tool_call>"]:
        ids = tokenizer.encode(word, add_special_tokens=False)
        assert tokenizer.decode(ids) == word
    assert tokenizer.convert_tokens_to_ids("<tool_call>") != tokenizer.unk_token_id


def test_template_renders_tool_call_and_tools_line(tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "obs"},
                prompting.interact_message(["do"], "tree", "c1")]
    text = tokenizer.apply_chat_template(messages, tools=prompting.TOOLS, tokenize=False)
    assert text.startswith("<|im_start|>tools\ninteract(actions,reasoning); terminate(reason)<|im_end|>\n")
    assert '<|im_start|>assistant\n<tool_call>{"name": "interact", "arguments": {"actions": ["do"]' in text


def test_labels_cover_exactly_the_assistant_turns(tokenizer):
    row = short_rows(4, history_turns=1)[2]
    example = parse_example(row, "mem:1")
    token_row = tokenize_example(tokenizer, example, 4096)
    labelled = [t for t in token_row.labels if t != IGNORE_INDEX]
    assistants = [m for m in example.messages if m["role"] == "assistant"]
    assert len(assistants) == 2  # one history turn + the answer: both learned, like OpenAI fine-tuning
    assert tokenizer.decode(labelled) == "".join(_assistant_text(m) for m in assistants)
    # and nothing of the prompt: the first labelled position is right after "<|im_start|>assistant\n"
    first = next(i for i, t in enumerate(token_row.labels) if t != IGNORE_INDEX)
    assert tokenizer.decode(token_row.input_ids[:first]).endswith("<|im_start|>assistant\n")


def test_weight_zero_assistant_is_not_learned(tokenizer):
    row = short_rows(4, history_turns=1)[2]
    history_assistant = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
    row["messages"][history_assistant]["weight"] = 0
    token_row = tokenize_example(tokenizer, parse_example(row, "mem:1"), 4096)
    labelled = tokenizer.decode([t for t in token_row.labels if t != IGNORE_INDEX])
    assert labelled == _assistant_text(row["messages"][-1])


def test_long_conversation_loses_oldest_turns_not_the_answer(tokenizer):
    row = short_rows(6, history_turns=3)[5]
    example = parse_example(row, "mem:1")
    full = tokenize_example(tokenizer, example, 4096)
    cut = tokenize_example(tokenizer, example, len(full.input_ids) - 1)
    assert cut is not None and len(cut.input_ids) < len(full.input_ids)
    assert cut.input_ids[-20:] == full.input_ids[-20:]
    assert tokenizer.decode(cut.input_ids).startswith("<|im_start|>tools\n")
    assert "<|im_start|>system\n" in tokenizer.decode(cut.input_ids)
    assert tokenize_example(tokenizer, example, 20) is None


@pytest.mark.parametrize(("line", "needle"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "no assistant message"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}), "unknown role"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "interact", "arguments": "{bad"}}]}]}), "arguments are not valid"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "data.jsonl"
    good = json.dumps(short_rows(1)[0])
    path.write_text(f"{good}\n{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_chat_jsonl(path)
    assert f"{path}:3" in str(info.value) and needle in str(info.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_chat_jsonl(tmp_path / "nope.jsonl")


def test_parse_reply_variants():
    content, calls = parse_reply('<tool_call>{"name": "interact", "arguments": {"actions": ["do"], '
                                 '"reasoning": "x"}}</tool_call>')
    assert content is None and calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "interact"
    assert json.loads(calls[0]["function"]["arguments"]) == {"actions": ["do"], "reasoning": "x"}
    assert calls[0]["id"].startswith("call_")
    # a reply cut off before the closing tag still parses when its JSON is complete
    _, calls = parse_reply('<tool_call>{"name": "terminate", "arguments": {"reason": "r"}}')
    assert calls[0]["function"]["name"] == "terminate"
    assert parse_reply('<tool_call>{"name": "interact", "argu') == ('<tool_call>{"name": "interact", "argu', None)
    assert parse_reply("just text ") == ("just text", None)
    assert parse_reply("") == (None, None)
