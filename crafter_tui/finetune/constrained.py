"""Constrained decoding: the reply is forced to be a schema-valid tool call, JSON, or plain text.

A request asks for it the way OpenAI's API does: ``tool_choice`` ``"required"`` or a named
function, a ``strict: true`` tool, or ``response_format`` ``json_schema``/``json_object``
(``"none"`` forbids tool calls; ``"auto"`` with non-strict tools keeps free generation). The
request is turned into an ``OutputSpec`` here, before any model is loaded, so bad schemas are
a 400 naming the feature (``SchemaError``); the engine then asks ``Constrainer.matcher`` for a
``TokenMatcher`` and, at every step, lets it choose the token (``TokenMatcher.choose``: the
unconstrained pick when the grammar allows it, else a pick among the allowed tokens) and
advances it. Nothing outside this module touches the grammar library.

The grammar forces exactly the text ``inference.parse_reply`` turns into a call:
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, with the separators of
``json.dumps`` (``", "``, ``": "``) and properties in schema order, the form the built-in
chat template and the exporter write, so a trained model's likely tokens stay allowed (the
built-in tokenizer has single tokens for that boilerplate). ``<tool_call>`` may be the special
token (Qwen2.5, the built-in tokenizer) or the same text spelt in ordinary tokens, optionally
followed by a newline (Qwen2.5's template). Two bounds keep every reply inside the schema and
the budget (``bounded``): objects with ``properties`` and no ``additionalProperties`` are closed,
so the model cannot wander into invented keys, and free strings get a ``maxLength`` of a third
of ``max_tokens`` (``string_cap``), so a model that loops inside its reasoning closes the call
instead of being cut at ``max_tokens``.

Engine: llguidance (``pip install llguidance``, in the ``train`` extra). Measured against
xgrammar 0.2.8 and outlines-core 0.2.14 on the built-in byte-level BPE tokenizer
(``benchmarks/bench_generation.py --constrained`` for the figures in context):

* install: llguidance is one 7.6 MB wheel with no dependencies (2 s); xgrammar pulls triton
  (~1 GB) and apache-tvm-ffi (37 s); outlines-core is small but only takes a regex and a
  hand-built vocabulary;
* tokenizer compatibility: llguidance reads the Hugging Face tokenizer's JSON, so special and
  added tokens (``<|im_start|>``, ``<tool_call>``) are tokens, never text inside a JSON string;
  xgrammar let ``<|im_start|>`` and ``</tool_call>`` appear *inside* the reasoning string,
  which breaks the reply's framing; outlines-core has no notion of special tokens;
* grammar: llguidance's Lark dialect embeds JSON schemas (``%json``) in a grammar, so the
  ``<tool_call>`` framing, a text-or-call choice and "text without a call" (regex negation)
  are one grammar each; xgrammar needs EBNF surgery, outlines-core one big regex;
* per-token mask: ~50 us p50 with llguidance on the built-in vocabulary (xgrammar ~13 us),
  ~0.5 ms for a 28k-token BPE on a 151,936-row output layer (Qwen2.5's shape). Checking the
  model's own pick first (a few us) leaves the mask to the turns that need it, so a trained
  model pays almost nothing: ``bench_generation.py --constrained`` measures the whole call
  (goal <= +10%).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from crafter_tui.errors import UserError

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
#: ``json.dumps``' separators, no free whitespace: the trained format, and no room to loop on spaces.
JSON_FORMAT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

#: JSON-schema keywords the engine honours (OpenAI's strict-mode set and a little more).
SUPPORTED_KEYWORDS = frozenset({
    "type", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
    "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems",
    "pattern", "format", "minLength", "maxLength",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    # annotations: no effect on the output
    "description", "title", "default", "examples", "$comment", "$schema", "$id",
})
SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6",
                               "uuid"})
JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
DEFINITION_KEYS = ("$defs", "definitions")
MIN_STRING_CAP = 16
#: keywords whose values are data, not schemas
_VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required", "properties", "$defs", "definitions"})
#: a string with one of these is already bounded or shaped: no cap added
_FIXED_STRING_KEYWORDS = frozenset({"maxLength", "enum", "const", "pattern", "format"})


class SchemaError(ValueError):
    """A request whose output constraint cannot be honoured; the service answers 400 with it."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class OutputSpec:
    """What the reply must be.

    ``calls``: (name, JSON schema of the whole ``{"name", "arguments"}`` payload) of the tools a
    call may use; ``call_required``: a call is the only allowed reply; ``json_schema``: a JSON
    reply (content) must satisfy it; ``text``: a text reply (without a tool call) is allowed.
    """

    calls: tuple[tuple[str, str], ...] = ()
    call_required: bool = False
    json_schema: str | None = None
    text: bool = False

    @property
    def kind(self) -> Literal["tool_call", "json", "text", "mixed"]:
        if self.call_required:
            return "tool_call"
        if self.json_schema is not None and not self.calls:
            return "json"
        if self.text and not self.calls and self.json_schema is None:
            return "text"
        return "mixed"

    def grammar(self, special_open: bool, special_close: bool) -> str:
        """The Lark grammar (llguidance's dialect); ``special_*``: the tokenizer has ``<tool_call>``
        / ``</tool_call>`` as special tokens, which the grammar then also accepts."""
        options = []
        rules = []
        if self.calls:
            options.append("call")
            opener = f'"{TOOL_CALL_OPEN}"' + (f" | {TOOL_CALL_OPEN}" if special_open else "")
            closer = f'"{TOOL_CALL_CLOSE}"' + (f" | {TOOL_CALL_CLOSE}" if special_close else "")
            payloads = [json.loads(schema) for _, schema in self.calls]
            body = payloads[0] if len(payloads) == 1 else {"anyOf": payloads, **_shared_definitions(payloads)}
            rules += ['call: call_open "\\n"? call_body "\\n"? call_close', f"call_open: {opener}",
                      f"call_close: {closer}", "call_body: %json " + json.dumps({**body, "x-guidance": JSON_FORMAT})]
        if self.json_schema is not None:
            options.append("json_reply")
            schema = json.loads(self.json_schema)
            rules.append("json_reply: %json " + json.dumps({**schema, "x-guidance": JSON_FORMAT}))
        if self.text:
            options.append("TEXT")
            # any text that does not contain a call (special tokens are never text)
            rules.append(f"TEXT: /(?s:.*)/ & ~/(?s:.*{TOOL_CALL_OPEN}.*)/")
        return "\n".join([f"start: {' | '.join(options)}", *rules])


def _shared_definitions(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """The tools' definitions, moved to the root of their ``anyOf`` (where references resolve)."""
    merged: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for key in DEFINITION_KEYS:
            for name, schema in payload.pop(key, {}).items():
                if merged.setdefault(key, {}).setdefault(name, schema) != schema:
                    raise SchemaError(f"two tools define {key}.{name} differently; give them distinct names",
                                      param="tools", code="unsupported_value")
    return merged


# -- from the request ---------------------------------------------------------------------
def string_cap(max_tokens: int | None) -> int | None:
    """The length (characters) given to free strings for a reply of ``max_tokens`` tokens.

    A free string is the one unbounded part of a typical schema, and where a weak model loops
    ("want 5 for a table and want 5 for a table ..."): capped at a third of the budget (a token
    is at least one character), the rest of the reply fits, so a constrained reply ends complete
    rather than cut at ``max_tokens``. A shorter string still satisfies the schema.
    """
    return None if max_tokens is None else max(MIN_STRING_CAP, max_tokens // 3)


def output_spec(tools: list[dict[str, Any]] | None, tool_choice: Any,
                response_format: dict[str, Any] | None, max_tokens: int | None = None) -> OutputSpec | None:
    """The constraint a chat request asks for, or None for free generation (today's behaviour).

    Tool schemas are checked only when a call is constrained; ``max_tokens`` (the reply's budget)
    bounds free strings (``string_cap``). Raises ``SchemaError`` (``param`` names the field) for a
    choice or schema that cannot be honoured.
    """
    tools = tools or []
    cap = string_cap(max_tokens)
    names = [_tool_name(tool, index) for index, tool in enumerate(tools)]
    choice = _tool_choice(tool_choice, names)
    reply_schema = _response_schema(response_format, cap)
    if choice == "none" or not tools:
        if reply_schema is not None:
            return OutputSpec(json_schema=reply_schema)
        return OutputSpec(text=True) if choice == "none" and tools else None
    if choice == "required" or isinstance(choice, tuple):
        chosen = [i for i, name in enumerate(names) if choice == "required" or name == choice[0]]
        return OutputSpec(calls=tuple(_call_schema(tools[i], i, cap) for i in chosen), call_required=True)
    # "auto": a text reply or a call; constrained only when a tool is strict or the reply format asks
    if not any(tool["function"].get("strict") is True for tool in tools) and reply_schema is None:
        return None
    calls = tuple(_call_schema(tool, index, cap) for index, tool in enumerate(tools))
    return OutputSpec(calls=calls, json_schema=reply_schema, text=reply_schema is None)


def _tool_name(tool: Any, index: int) -> str:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise SchemaError(f"{where}: only function tools are supported", param=where)
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise SchemaError(f"{where}.function.name must be a non-empty string", param=f"{where}.function.name")
    return function["name"]


def _call_schema(tool: dict[str, Any], index: int, cap: int | None) -> tuple[str, str]:
    """(name, JSON schema of the call's ``{"name", "arguments"}`` payload), the tool's schema checked."""
    function = tool["function"]
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    check_schema(parameters, f"tools[{index}].function.parameters", strict=function.get("strict") is True)
    arguments = bounded(parameters, cap)
    # definitions move to the payload's root, where the parameters' "#/$defs/..." references now point
    definitions = {key: arguments.pop(key) for key in DEFINITION_KEYS if key in arguments}
    payload = {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": arguments},
               "required": ["name", "arguments"], "additionalProperties": False, **definitions}
    return function["name"], json.dumps(payload)


def _tool_choice(choice: Any, names: list[str]) -> str | tuple[str]:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise SchemaError(f"tool_choice must be 'none', 'auto', 'required' or a function, got {choice!r}",
                              param="tool_choice")
        if choice == "required" and not names:
            raise SchemaError("tool_choice 'required' needs at least one tool", param="tool_choice")
        return choice
    name = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if not isinstance(name, str):
        raise SchemaError("tool_choice must be 'none', 'auto', 'required' or "
                          "{'type': 'function', 'function': {'name': ...}}", param="tool_choice")
    if name not in names:
        raise SchemaError(f"tool_choice names the function {name!r}, which is not in tools", param="tool_choice")
    return (name,)


def _response_schema(response_format: Any, cap: int | None) -> str | None:
    """The JSON schema a ``response_format`` asks for (as JSON text), None for text."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    if kind != "json_schema":
        raise SchemaError("response_format.type must be 'text', 'json_object' or 'json_schema'",
                          param="response_format.type")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise SchemaError("response_format.json_schema.schema must be a JSON schema object",
                          param="response_format.json_schema.schema")
    check_schema(spec["schema"], "response_format.json_schema.schema", strict=spec.get("strict") is True)
    return json.dumps(bounded(spec["schema"], cap))


def check_schema(schema: Any, where: str, strict: bool = False) -> None:
    """Reject what the engine cannot honour, naming the keyword and where it is.

    ``strict`` adds OpenAI's strict-mode rules: every object lists all its properties in
    ``required`` and sets ``additionalProperties: false``.
    """
    if not isinstance(schema, dict):
        raise SchemaError(f"{where} must be a JSON schema object", param=where)
    for key in schema:
        if key not in SUPPORTED_KEYWORDS:
            raise SchemaError(f"unsupported JSON schema feature '{key}' at {where}", param=where,
                              code="unsupported_value")
    types = schema.get("type")
    for name in types if isinstance(types, list) else [types] if types is not None else []:
        if name not in JSON_TYPES:
            raise SchemaError(f"unknown JSON schema type {name!r} at {where}", param=where)
    if "format" in schema and schema["format"] not in SUPPORTED_FORMATS:
        raise SchemaError(f"unsupported JSON schema feature 'format: {schema['format']}' at {where}",
                          param=where, code="unsupported_value")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaError(f"{where}.properties must be an object", param=f"{where}.properties")
    for name, sub in properties.items():
        check_schema(sub, f"{where}.properties.{name}", strict)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        check_schema(extra, f"{where}.additionalProperties", strict)
    if isinstance(schema.get("items"), dict):
        check_schema(schema["items"], f"{where}.items", strict)
    elif "items" in schema:
        raise SchemaError(f"{where}.items must be one schema (tuple items are not supported)", param=where,
                          code="unsupported_value")
    for index, sub in enumerate(schema.get("anyOf") or []):
        check_schema(sub, f"{where}.anyOf[{index}]", strict)
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, f"{where}.{key}.{name}", strict)
    if strict and (types == "object" or "properties" in schema):
        if extra is not False:
            raise SchemaError(f"strict schemas need 'additionalProperties': false at {where}", param=where)
        missing = [name for name in properties if name not in (schema.get("required") or [])]
        if missing:
            raise SchemaError(f"strict schemas need every property in 'required' at {where} (missing: "
                              f"{', '.join(missing)})", param=where)


def bounded(schema: Any, cap: int | None = None) -> Any:
    """``schema`` as the engine gets it: ``additionalProperties: false`` on objects that list
    properties and leave it unset, and ``maxLength: cap`` on free strings (no length, enum,
    const, pattern or format of their own). Every reply it allows satisfies ``schema``."""
    if isinstance(schema, list):
        return [bounded(item, cap) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: (value if key in _VALUE_KEYWORDS else bounded(value, cap)) for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: bounded(sub, cap) for name, sub in schema["properties"].items()}
        if schema["properties"]:
            out.setdefault("additionalProperties", False)
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: bounded(sub, cap) for name, sub in schema[key].items()}
    types = schema.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    if cap is not None and is_string and not _FIXED_STRING_KEYWORDS & schema.keys():
        out["maxLength"] = cap
    return out


# -- the engine side ------------------------------------------------------------------------
class TokenMatcher:
    """One reply's grammar state: mask the logits, advance with the chosen token.

    ``choose`` picks a token the way the engine does, but computes the mask only when the
    unconstrained pick is not allowed: a trained model's pick almost always is, and checking one
    token costs a few microseconds where a mask costs tens to hundreds. Greedy, this is the argmax
    of the masked logits; sampled, it is rejection sampling, whose draw has exactly the masked
    distribution (p(t) + p(rejected) * p(t) / p(allowed) = p(t) / p(allowed)).
    """

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab = vocab_size

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Set the logits of tokens the grammar forbids to -inf (in place) and return them."""
        bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = torch.from_numpy(bits[: logits.shape[-1]].view(bool))
        if allowed.shape[0] < logits.shape[-1]:  # padding rows of the output layer: never allowed
            allowed = torch.cat([allowed, torch.zeros(logits.shape[-1] - allowed.shape[0], dtype=torch.bool)])
        return logits.masked_fill_(~allowed.to(logits.device), float("-inf"))

    def allows(self, token_id: int) -> bool:
        """Whether the grammar takes ``token_id`` next (a few microseconds: no mask is computed)."""
        return self._matcher.validate_tokens([token_id]) == 1

    def advance(self, token_id: int) -> bool:
        """Take the chosen token; False if the grammar rejects it (never after ``mask``)."""
        return bool(self._matcher.consume_token(token_id))

    def choose(self, logits: torch.Tensor, pick: Callable[[torch.Tensor], int]) -> int:
        """``pick(logits)`` if the grammar allows it, else ``pick`` of the masked logits."""
        token_id = pick(logits)
        return token_id if self.allows(token_id) else pick(self.mask(logits))

    @property
    def finished(self) -> bool:
        """The grammar is complete and nothing may follow: only a stop token would come next."""
        return bool(self._matcher.is_stopped())

    @property
    def accepting(self) -> bool:
        """The text so far is a complete reply (it may still go on, e.g. free text)."""
        return bool(self._matcher.is_accepting())


class Constrainer:
    """The grammar engine for one tokenizer: compiles each distinct constraint once (kept in a
    small LRU; an episode sends the same tools every turn) and hands out fresh matchers."""

    CACHE_SIZE = 16

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: set[int]) -> None:
        try:
            import llguidance
            import llguidance.hf
        except ImportError:
            raise UserError("constrained decoding needs llguidance: pip install 'crafter-tui[train]'",
                            where="tool_choice/response_format") from None
        self._llguidance = llguidance
        self.vocab_size = max(vocab_size, len(tokenizer))
        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size,
                                                       eos_token=sorted(stop_ids))
        self._special = {text: self._is_special(tokenizer, text) for text in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE)}
        self._compiled: OrderedDict[OutputSpec, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _is_special(self, tokenizer: Any, text: str) -> bool:
        token_id = tokenizer.convert_tokens_to_ids(text)
        return (isinstance(token_id, int) and token_id != tokenizer.unk_token_id and 0 <= token_id < self.vocab_size
                and self._tokenizer.is_special_token(token_id))

    def grammar(self, spec: OutputSpec) -> str:
        return spec.grammar(self._special[TOOL_CALL_OPEN], self._special[TOOL_CALL_CLOSE])

    def matcher(self, spec: OutputSpec) -> TokenMatcher:
        """A matcher at the start of a reply; ``SchemaError`` if the engine rejects the grammar."""
        with self._lock:
            template = self._compiled.get(spec)
            if template is None:
                template = self._llguidance.LLMatcher(self._tokenizer, self.grammar(spec), log_level=0)
                if template.is_error():
                    raise SchemaError(f"the output constraint cannot be compiled: {template.get_error()}",
                                      param="tools" if spec.calls else "response_format")
                self._compiled[spec] = template
                while len(self._compiled) > self.CACHE_SIZE:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(spec)
            return TokenMatcher(template.deep_copy(), self.vocab_size)
