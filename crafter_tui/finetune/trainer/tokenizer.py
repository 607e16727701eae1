"""A byte-level BPE tokenizer trained on the training data, for the built-in models.

Why train one: the built-in models are built from scratch with no downloads, and a small
vocabulary fitted to Crafter prompts keeps the embedding and output layers cheap (the output
projection is a large share of a tiny model's compute). A fixed seed corpus with every
action, achievement, tool name and the tool-call format is always part of the training text,
so every token the model must emit exists even in a tiny data set.

The chat template is Qwen-style and compact: ``<|im_start|>role`` blocks, assistant tool
calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, tools listed in one
short line as ``name(param,...)``. Assistant spans sit inside ``{% generation %}`` tags so
``return_assistant_tokens_mask`` marks exactly the tokens the loss is computed on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from crafter_tui.agents import prompting
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
#: Special tokens (never split, skipped when decoding with ``skip_special_tokens``).
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END]
#: Added tokens kept in decoded text: the parser needs them.
TOOL_TOKENS = [TOOL_CALL_OPEN, TOOL_CALL_CLOSE]


def reply_tokens() -> list[str]:
    """Whole pieces of the tool-call reply as single tokens.

    Generation time is dominated by the number of decode steps (each is a full forward
    pass), and the byte-level pre-tokenizer cannot merge across spaces and punctuation, so
    the fixed JSON around an ``interact`` call would cost ~20 steps. As added tokens the
    boilerplate and each quoted action are one step each: a typical reply drops from ~34
    to ~12 tokens. Other argument orders still tokenize normally, just longer.
    """
    pieces = [
        TOOL_CALL_OPEN + '{"name": "interact", "arguments": {"actions": [',
        '], "reasoning": "',
        '"}}' + TOOL_CALL_CLOSE,
        TOOL_CALL_OPEN + '{"name": "terminate", "arguments": {"reason": "',
    ]
    return pieces + [f'"{action}"' for action in ACTIONS]

CHAT_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>tools\\n' }}"
    "{%- for t in tools %}{%- set f = t.function if t.function is defined else t %}"
    "{{ f.name }}({% if f.parameters is defined and f.parameters.properties is defined %}"
    "{{ f.parameters.properties | list | join(',') }}{% endif %})"
    "{%- if not loop.last %}{{ '; ' }}{% endif %}{%- endfor %}{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{%- if m.content is string %}{{ m.content }}{% endif %}"
    "{%- if m.tool_calls %}{%- for tc in m.tool_calls %}"
    "{%- set f = tc.function if tc.function is defined else tc %}"
    "{{ '<tool_call>{\"name\": \"' + f.name + '\", \"arguments\": ' }}"
    "{%- if f.arguments is string %}{{ f.arguments }}{% else %}{{ f.arguments | tojson }}{% endif %}"
    "{{ '}</tool_call>' }}{%- endfor %}{%- endif %}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else %}{{ '<|im_start|>' + m.role + '\\n' }}"
    "{%- if m.content is string %}{{ m.content }}{% endif %}{{ '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def seed_corpus() -> list[str]:
    """Text that guarantees every action, achievement and the tool-call syntax are tokenizable."""
    texts = [prompting.SYSTEM_PROMPT, " ".join(ACTIONS), " ".join(ACHIEVEMENTS)]
    for action in ACTIONS:
        args = json.dumps({"actions": [action, action], "reasoning": f"{action} now"})
        texts.append(f'{TOOL_CALL_OPEN}{{"name": "interact", "arguments": {args}}}{TOOL_CALL_CLOSE}')
    texts.append(f'{TOOL_CALL_OPEN}{{"name": "terminate", "arguments": {{"reason": "done"}}}}{TOOL_CALL_CLOSE}')
    texts.append("interact(actions,reasoning); terminate(reason)")
    texts.append("0123456789 north south east west here and of")
    texts.extend(["tools\nsystem\nuser\nassistant\ntool\n"] * 8)  # the template's role names: one token each
    return texts


def message_texts(messages: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The strings of one conversation that end up in the rendered prompt."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and content:
            yield content
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            yield f'{TOOL_CALL_OPEN}{{"name": "{function.get("name")}", "arguments": {arguments}}}{TOOL_CALL_CLOSE}'


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` plus the seed corpus and wrap it for transformers."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(seed_corpus()) + list(texts)
    bpe.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens(TOOL_TOKENS + reply_tokens())  # non-special: kept when decoding
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
