"""Load a trained model and answer chat messages with OpenAI-shaped tool calls.

Speed matters here (one call per Crafter turn), so generation is a hand-written loop
rather than ``model.generate``: greedy by default, a KV cache, logits only for the last
position, and a *prompt cache*: every prompt runs in two pieces, its system head (the tools
block and the long system prompt, identical across an experiment) and the rest; the head's KV
is kept between calls, so a turn whose head matches the previous call's runs only its
observation and history through the model. The pieces are a function of the prompt alone,
never of what the service answered before: a reply (greedy, or sampled with a seed) is the
same whichever requests came first, which keeps concurrent episodes bit-reproducible (a cut
at wherever the previous prompt happened to diverge changes the float rounding, and at a
temperature that flips samples).
Qwen2 models (the built-in ones, Qwen2.5) run on ``qwen2_decoder.Qwen2Decoder``, a lean
forward with a pre-sized KV cache (~3x less time per token than the Hugging Face forward,
same logits); other architectures use the Hugging Face forward with a ``DynamicCache``.

Device: CUDA when it is available (or ``$CRAFTER_TUI_INFERENCE_DEVICE``: ``auto``, ``cpu``,
``cuda``, ``cuda:N``), else the CPU. On a GPU, pretrained models (Qwen2.5, LoRA merged) run in
bfloat16 where the card supports it, as the trainer trains them; the built-in sizes stay in
float32, in which they were trained. On the CPU nothing changes: weights load as saved. Every
tensor the loop makes (input ids, KV cache, sampling generator) lives on the model's device,
so a seeded sampled reply replays on the same kind of device.

The reply text is parsed for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(the format of the built-in chat template and of Qwen2.5); text that does not parse is
returned as ``content`` so the caller can record an invalid action.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedTokenizerBase

from crafter_tui.errors import UserError
from crafter_tui.finetune.constrained import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Constrainer, OutputSpec, TokenMatcher
from crafter_tui.finetune.qwen2_decoder import Qwen2Decoder
from crafter_tui.finetune.trainer.data import fit_messages, normalise_message
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES
from crafter_tui.finetune.trainer.tokenizer import IM_START

TRAINING_INFO_FILE = "crafter_tui_training.json"
#: Forces the inference device (``auto``, ``cpu``, ``cuda``, ``cuda:N``); unset means ``auto``.
DEVICE_ENV_VAR = "CRAFTER_TUI_INFERENCE_DEVICE"
DEFAULT_MAX_LENGTH = 2048
_JSON = json.JSONDecoder()


class ChatResult(BaseModel):
    """One assistant reply, ready to wrap into a chat completion."""

    content: str | None
    tool_calls: list[dict[str, Any]] | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length", "tool_calls"]
    cached_prompt_tokens: int = 0


def parse_reply(text: str) -> tuple[str | None, list[dict[str, Any]] | None]:
    """Split generated text into content and OpenAI ``tool_calls``; unparseable calls stay text.

    Each ``<tool_call>`` is followed by one JSON value, read as JSON (so a string inside it may
    contain ``</tool_call>``), then ``</tool_call>`` or the end of the text.
    """
    spans = _tool_call_spans(text)
    if not spans:  # no call, or one that does not parse
        return text.strip() or None, None
    calls = []
    for _, _, payload in spans:
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            return text.strip() or None, None
        arguments = payload.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": payload["name"], "arguments": arguments}})
    pieces, last = [], 0
    for start, end, _ in spans:  # the text around the calls
        pieces.append(text[last:start])
        last = end
    content = ("".join(pieces) + text[last:]).strip()
    return content or None, calls


def _tool_call_spans(text: str) -> list[tuple[int, int, Any]] | None:
    """(start, end, payload) of each tool call in ``text``; None when one does not parse."""
    spans: list[tuple[int, int, Any]] = []
    position = 0
    while (start := text.find(TOOL_CALL_OPEN, position)) >= 0:
        begin = _skip_space(text, start + len(TOOL_CALL_OPEN))
        try:
            payload, end = _JSON.raw_decode(text, begin)
        except (json.JSONDecodeError, RecursionError):  # generated text: a deeply nested "call" stays text
            return None
        end = _skip_space(text, end)
        if text.startswith(TOOL_CALL_CLOSE, end):
            end += len(TOOL_CALL_CLOSE)
        elif end < len(text):  # something other than the closing tag after the JSON
            return None
        spans.append((start, end, payload))
        position = end
    return spans


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module) -> set[int]:
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


class LoadedModel:
    """A model and tokenizer in memory, answering one chat at a time (calls are serialised)."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path,
                 max_length: int = DEFAULT_MAX_LENGTH, threads: int | None = None) -> None:
        self.model = model.eval()
        #: Where the weights are; every tensor generation makes is put there too.
        self.device = next(model.parameters()).device
        self.threads = threads
        self.tokenizer = tokenizer
        self.path = path
        self.max_length = max_length
        self.stop_ids = _stop_token_ids(tokenizer, model)
        self._lock = threading.Lock()
        self._cache: DynamicCache | None = None
        #: The head (``_head_length``) of the previous prompt whose KV the cache holds; [] when none.
        self._cached_head: list[int] = []
        marker = tokenizer.convert_tokens_to_ids(IM_START)
        self._marker = marker if isinstance(marker, int) and marker != tokenizer.unk_token_id else None
        #: The lean forward for Qwen2 models (the built-in ones): ~3x faster per token; others use HF's.
        self._decoder = Qwen2Decoder(self.model) if Qwen2Decoder.supports(self.model) else None
        self._constrainer: Constrainer | None = None  # built on the first constrained call

    def constrainer(self) -> Constrainer:
        """The grammar engine on this model's tokenizer (built once: ~1 s for a 150k vocabulary)."""
        if self._constrainer is None:
            vocab = int(getattr(self.model.config, "vocab_size", 0) or len(self.tokenizer))
            self._constrainer = Constrainer(self.tokenizer, vocab, self.stop_ids)
        return self._constrainer

    def reset_prompt_cache(self) -> None:
        """Forget the previous call's KV: the next call runs its whole prompt (benchmarks, checks)."""
        with self._lock:
            self._cache, self._cached_head = None, []
            if self._decoder is not None:
                self._decoder.truncate(0)

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   max_tokens: int) -> list[int]:
        """Token ids of the prompt, oldest history turns dropped so prompt + reply fit max_length."""
        normalised = [normalise_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
        budget = max(1, self.max_length - max_tokens)
        fitted = fit_messages(self.tokenizer, normalised, tools, budget, add_generation_prompt=True)
        if fitted is None:
            raise UserError(f"the last turn alone is longer than the model's context ({budget} tokens)",
                            where="messages")
        return fitted[1]

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
             max_tokens: int = 96, temperature: float = 0.0, seed: int | None = None,
             output: OutputSpec | None = None) -> ChatResult:
        """Generate one reply; greedy at temperature 0, sampled (seeded if given) otherwise.

        ``output`` constrains decoding (``constrained.output_spec``): a reply that ends before
        ``max_tokens`` then is exactly a schema-valid call, JSON or call-free text.
        """
        ids = self.prompt_ids(messages, tools, max_tokens)
        matcher = self.constrainer().matcher(output) if output is not None else None
        generated, reused, stopped = self.generate_ids(ids, max_tokens, temperature, seed, matcher)
        text = self.tokenizer.decode(generated, skip_special_tokens=False)
        if output is not None and output.kind in ("json", "text"):
            content, calls = text.strip() or None, None  # the grammar allowed no call: nothing to parse
        else:
            content, calls = parse_reply(text)
        reason: Literal["stop", "length", "tool_calls"] = "tool_calls" if calls else ("stop" if stopped else "length")
        return ChatResult(content=content, tool_calls=calls, prompt_tokens=len(ids),
                          completion_tokens=len(generated) + int(stopped), finish_reason=reason,
                          cached_prompt_tokens=reused)

    def generate_ids(self, ids: list[int], max_tokens: int, temperature: float = 0.0,
                     seed: int | None = None, matcher: TokenMatcher | None = None) -> tuple[list[int], int, bool]:
        """The reply's token ids after prompt ``ids`` (stop token excluded), the prompt tokens
        taken from the prompt cache, and whether a stop token (or a finished grammar) ended the
        reply. ``matcher`` masks every step's logits to what its grammar allows."""
        generator = None
        if temperature > 0:  # on the model's device: torch.multinomial there needs a generator there
            generator = torch.Generator(self.device).manual_seed(seed if seed is not None else torch.seed())
        with self._lock, torch.inference_mode():
            self._pin_threads()
            return self._generate(ids, max_tokens, temperature, generator, matcher)

    def _pin_threads(self) -> None:
        """Re-apply the thread count: other libraries in the process may have changed it, and on a
        busy 2-core machine extra torch threads make every small op wait (measured 10-20x slower)."""
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _head_length(self, ids: list[int]) -> int:
        """Where the prompt's system head ends: the start of its first message that is neither the
        system prompt nor the tools block (0: no head, the prompt runs in one piece)."""
        if self._marker is None:
            return 0
        for index, token in enumerate(ids):
            if token == self._marker and index > 0:
                role = self.tokenizer.decode(ids[index + 1:index + 3]).lstrip()
                if not role.startswith(("system", "tools")):
                    return index
        return 0

    def _reusable_head(self, ids: list[int], head: int, cached: int) -> int:
        """``head`` when the cache holds exactly this prompt's head (``cached`` positions), else 0."""
        return head if head and cached >= head and self._cached_head == ids[:head] else 0

    def _generate(self, ids: list[int], max_tokens: int, temperature: float,
                  generator: torch.Generator | None,
                  matcher: TokenMatcher | None = None) -> tuple[list[int], int, bool]:
        if self._decoder is not None:
            return self._generate_fast(self._decoder, ids, max_tokens, temperature, generator, matcher)
        head = self._head_length(ids)
        cached = self._cache.get_seq_length() if self._cache is not None else 0
        reused = self._reusable_head(ids, head, cached)
        cache = self._cache if reused else DynamicCache(config=self.model.config)
        if reused and cached > reused:
            cache.crop(reused - cached)
        self._cache, self._cached_head = None, []  # invalid until this call completes
        if reused < head:  # the head alone, as every call computes it
            self.model(input_ids=torch.tensor([ids[:head]], dtype=torch.long, device=self.device),
                       cache=cache, use_cache=True, logits_to_keep=1)
        feed = torch.tensor([ids[head:]], dtype=torch.long, device=self.device)
        generated: list[int] = []
        stopped = False
        for _ in range(max_tokens):
            logits = self.model(input_ids=feed, cache=cache, use_cache=True, logits_to_keep=1).logits
            next_id = self._choose(logits[0, -1], temperature, generator, matcher)
            if next_id in self.stop_ids:
                stopped = True
                break
            generated.append(next_id)
            if matcher is not None and _grammar_done(matcher, next_id):
                stopped = True
                break
            feed = torch.tensor([[next_id]], dtype=torch.long, device=self.device)
        self._cache, self._cached_head = cache, ids[:head]
        return generated, reused, stopped

    def _generate_fast(self, decoder: Qwen2Decoder, ids: list[int], max_tokens: int, temperature: float,
                       generator: torch.Generator | None,
                       matcher: TokenMatcher | None = None) -> tuple[list[int], int, bool]:
        """``_generate`` on the lean decoder, whose own KV cache is the prompt cache."""
        head = self._head_length(ids)
        reused = self._reusable_head(ids, head, decoder.length)
        decoder.truncate(reused)
        self._cached_head = []  # invalid until this call completes
        if reused < head:  # the head alone, as every call computes it
            decoder.forward(ids[:head])
        generated: list[int] = []
        stopped = False
        logits = decoder.forward(ids[head:])
        for step in range(max_tokens):
            next_id = self._choose(logits, temperature, generator, matcher)
            if next_id in self.stop_ids:
                stopped = True
                break
            generated.append(next_id)
            if matcher is not None and _grammar_done(matcher, next_id):
                stopped = True  # only a stop token could follow: save the forward that would pick it
                break
            if step + 1 < max_tokens:
                logits = decoder.forward([next_id])
        self._cached_head = ids[:head]
        return generated, reused, stopped

    def _choose(self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                matcher: TokenMatcher | None) -> int:
        """The next token: ``_pick``, within what ``matcher``'s grammar allows when there is one."""
        if matcher is None:
            return self._pick(logits, temperature, generator)
        return matcher.choose(logits, lambda scores: self._pick(scores, temperature, generator))

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
        if temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))


def _grammar_done(matcher: TokenMatcher, token_id: int) -> bool:
    """Advance the grammar with the token just chosen; True when the reply is complete."""
    if not matcher.advance(token_id):  # cannot happen after masking; end the reply rather than loop
        return True
    return matcher.finished


def _training_info(path: Path) -> dict[str, Any]:
    info = path / TRAINING_INFO_FILE
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def choose_device(requested: str | None = None, environ: dict[str, str] | None = None) -> torch.device:
    """The device to serve on: ``requested``, else ``$CRAFTER_TUI_INFERENCE_DEVICE``, else auto
    (CUDA when available, the CPU otherwise). A CUDA device that is not there is a user error."""
    where = "device"
    if not requested:
        requested = (os.environ if environ is None else environ).get(DEVICE_ENV_VAR, "")
        where = DEVICE_ENV_VAR
    requested = requested.strip().lower() or "auto"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r} (auto, cpu, cuda or cuda:N)", where=where) from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {requested!r} (auto, cpu, cuda or cuda:N)", where=where)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("CUDA was asked for but torch sees no CUDA device", where=where)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"no CUDA device {device.index} ({torch.cuda.device_count()} visible)", where=where)
    return device


def inference_dtype(device: torch.device, base_model: str | None) -> torch.dtype | None:
    """The weights' dtype on ``device``; None keeps the saved dtype (the CPU, as before).

    On a GPU: bfloat16 for pretrained models where the card has it (how the trainer trains
    them; half the memory and time of float32), float32 for the built-in sizes (trained in
    float32 and small enough that precision costs nothing) and on cards without bfloat16.
    """
    if device.type != "cuda":
        return None
    if base_model in BUILTIN_SIZES or not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


def load_model(path: Path | str, threads: int | None = None, device: str | None = None,
               dtype: torch.dtype | None = None) -> LoadedModel:
    """A trained model folder (``output_dir/model`` or a checkpoint; LoRA adapters are merged).

    ``threads`` pins torch's intra-op threads for every call (1 is best for these small models
    on a shared 2-core machine); None leaves the process setting alone. ``device`` as
    ``choose_device`` reads it; ``dtype`` overrides ``inference_dtype`` (benchmarks, checks).
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError("model folder not found", where=str(path))
    target = choose_device(device)
    if threads:
        torch.set_num_threads(threads)
    info = _training_info(path)
    dtype = dtype or inference_dtype(target, info.get("base_model"))
    options: dict[str, Any] = {"local_files_only": True} | ({"dtype": dtype} if dtype is not None else {})
    try:
        if (path / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **options).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **options)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise UserError(f"not a loadable model folder: {exc}", where=str(path)) from None
    if target.type != "cpu":
        model = model.to(target)
    max_length = int(info.get("max_length", DEFAULT_MAX_LENGTH))
    return LoadedModel(model, tokenizer, path, max_length, threads=threads)
