"""A training forward for the built-in Qwen2 models that computes only what the loss reads.

Why: the SFT loss reads the logits of the few positions whose next token is an assistant
token (~9% of a brief Crafter row). The standard forward runs every layer, the final norm
and the LM head on every position, padding included. Here, with the same weights and the
same arithmetic per position:

- padding is dropped: every matmul runs on the real tokens only (rows are right-padded,
  so causal attention over the padded block never lets a real query see a padded key);
- the LAST layer computes keys and values for every token (the supervised queries attend
  to them) but its queries, attention output, MLP, final norm and LM head only at the
  supervised positions: nothing else there reaches the loss;
- a prefix shared by every row (the tools line and system prompt: ~60 of a brief demo
  row's ~115 tokens) is computed once per batch. Attention is causal and every row's
  positions start at 0, so a prefix token's hidden state, key and value in each layer depend
  on the prefix tokens alone and are the same in every row. Its tokens run once (batch 1,
  causal); each row's later tokens attend to keys and values gathered per row from that one
  copy plus the row's own. The gather's backward adds every row's gradient into the one copy,
  which is what the per-row copies of the full forward add up to in the parameter gradients.
  The prefix stops before the first supervised position of any row, so no query the loss
  reads is shared.

The loss, its gradients and TRL's metrics (entropy, token accuracy over the same positions)
are those of the full forward up to float rounding (the order of some sums differs; tests
compare them). On crafter-tiny and demo rows the first two points halve a step's work and
the shared prefix takes another third off (``bench_trainer.py --ab-shared-prefix``: ~1.5x).
Models or batches it cannot reproduce exactly (left padding, packed rows, sliding windows,
attention dropout, other architectures) return None and the caller runs the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from transformers import Qwen2ForCausalLM
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from crafter_tui.finetune.trainer.data import IGNORE_INDEX


@dataclass(frozen=True, slots=True)
class TokenLayout:
    """Where the real and the supervised tokens of a right-padded ``[batch, length]`` block are."""

    batch: int
    length: int
    real: torch.Tensor  # flat indices (into batch*length) of the tokens computed, row-major: every real
    # token, or with a shared prefix every real token but the prefix copies after the first row's
    positions: torch.Tensor  # position id of each token computed
    supervised: torch.Tensor  # indices into ``real`` of positions whose next token is a target
    targets: torch.Tensor  # the target id of each supervised position
    query_slots: torch.Tensor  # flat index (into batch*max_queries) of each supervised position
    query_mask: torch.Tensor  # [batch, 1, max_queries, length]: which keys each padded query slot sees
    prefix: SharedPrefix | None = None  # the rows' common start, computed once


@dataclass(frozen=True, slots=True)
class SharedPrefix:
    """Columns ``0..length-1`` hold the same tokens in every row: computed once, gathered per row."""

    length: int
    key_sources: torch.Tensor  # [batch*columns]: the computed token whose key/value each (row, column) holds
    suffix_slots: torch.Tensor  # flat index (into batch*suffix_width) of each computed token past the prefix
    suffix_width: int
    suffix_mask: torch.Tensor  # [1, 1, suffix_width, columns]: suffix query j sees columns <= length + j


#: Below this many shared tokens the saving does not pay for the gathers and the second attention call.
MIN_SHARED_PREFIX = 8


def supports_lean_forward(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a plain Qwen2 causal LM whose forward this module reproduces."""
    if type(model) is not Qwen2ForCausalLM:
        return False
    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (not getattr(config, "use_sliding_window", False)
            and all(kind == "full_attention" for kind in layer_types)
            and (config.attention_dropout == 0.0 or not model.training)
            and config.hidden_act == "silu"
            and config._attn_implementation in ("sdpa", "eager"))


def token_layout(attention_mask: torch.Tensor | None, labels: torch.Tensor) -> TokenLayout | None:
    """The layout of a batch, or None when it is not right-padded or has nothing to supervise."""
    batch, length = labels.shape
    columns = torch.arange(length, device=labels.device)
    if attention_mask is None:
        lengths = torch.full((batch,), length, device=labels.device)
    else:
        lengths = attention_mask.sum(1)
        if not torch.equal(attention_mask.bool(), columns[None] < lengths[:, None]):
            return None  # left padding or packed rows: positions are not 0..n-1 per row
    real = (columns[None] < lengths[:, None]).reshape(-1).nonzero().squeeze(1)
    next_labels = torch.cat([labels[:, 1:], labels.new_full((batch, 1), IGNORE_INDEX)], dim=1).reshape(-1)[real]
    supervised = (next_labels != IGNORE_INDEX).nonzero().squeeze(1)
    if supervised.numel() == 0:
        return None
    rows = real[supervised] // length
    counts = torch.bincount(rows, minlength=batch)
    max_queries = int(counts.max())
    slot_in_row = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    query_slots = rows * max_queries + slot_in_row
    positions = real % length
    # empty slots see key 0 only (a defined softmax); their outputs are never read
    query_positions = positions.new_zeros(batch * max_queries).index_copy(0, query_slots, positions[supervised])
    query_mask = columns[None, None, :] <= query_positions.view(batch, max_queries, 1)
    return TokenLayout(batch, length, real, positions, supervised, next_labels[supervised], query_slots,
                       query_mask.unsqueeze(1))


def shared_prefix_length(input_ids: torch.Tensor, layout: TokenLayout) -> int:
    """How many leading columns are the same in every row, within every row, and supervised in none."""
    same = (input_ids == input_ids[:1]).all(0)
    common = int(same.long().cumprod(0).sum())
    shortest = int(torch.bincount(layout.real // layout.length, minlength=layout.batch).min())
    first_supervised = int(layout.positions[layout.supervised].min())
    return min(common, shortest, first_supervised)


def with_shared_prefix(layout: TokenLayout, input_ids: torch.Tensor) -> TokenLayout:
    """``layout`` computing the rows' shared prefix once, or ``layout`` itself when that would not pay."""
    prefix = shared_prefix_length(input_ids, layout) if layout.batch >= 2 else 0
    if prefix < MIN_SHARED_PREFIX:
        return layout
    kept = (layout.real < layout.length) | (layout.positions >= prefix)  # the first row whole, others' suffixes
    computed, positions = layout.real[kept], layout.positions[kept]
    renumbered = torch.cumsum(kept, 0) - 1
    return replace(layout, real=computed, positions=positions, supervised=renumbered[layout.supervised],
                   prefix=_shared_prefix(layout, computed, positions, prefix))


def _shared_prefix(layout: TokenLayout, computed: torch.Tensor, positions: torch.Tensor,
                   prefix: int) -> SharedPrefix:
    """Where each row's keys come from and where each suffix query sits, for ``computed`` tokens whose
    first ``prefix`` are the shared ones (the first row's copy)."""
    device = computed.device
    key_sources = torch.zeros(layout.batch * layout.length, dtype=torch.long, device=device)
    key_sources.index_copy_(0, computed, torch.arange(computed.numel(), device=device))
    key_sources.view(layout.batch, layout.length)[:, :prefix] = torch.arange(prefix, device=device)
    suffix_rows, suffix_columns = computed[prefix:] // layout.length, positions[prefix:] - prefix
    width = int(suffix_columns.max()) + 1
    query_columns = torch.arange(width, device=device)[:, None] + prefix
    suffix_mask = torch.arange(layout.length, device=device)[None, :] <= query_columns
    return SharedPrefix(prefix, key_sources, suffix_rows * width + suffix_columns, width, suffix_mask[None, None])


def supervised_logits(model: Qwen2ForCausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      labels: torch.Tensor, share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(logits at the supervised positions, their targets), row-major like ``logits[:, :-1][mask]``.

    None when this batch or model needs the full forward (see the module docstring).
    ``share_prefix=False`` computes every row's prefix itself (for comparisons).
    """
    if not supports_lean_forward(model):
        return None
    layout = token_layout(attention_mask, labels)
    if layout is None:
        return None
    if share_prefix:
        layout = with_shared_prefix(layout, input_ids)
    core = model.model
    hidden = core.embed_tokens(input_ids.reshape(-1)[layout.real])
    cos, sin = core.rotary_emb(hidden, layout.positions[None])
    rotary = (cos[0].unsqueeze(1), sin[0].unsqueeze(1))  # [tokens, 1, head_dim]: broadcast over heads
    layers = core.layers[: model.config.num_hidden_layers]
    for layer in layers[:-1]:
        hidden = hidden + _attention_everywhere(layer.self_attn, layer.input_layernorm(hidden), rotary, layout)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    last = layers[-1]
    attended = _attention_at_supervised(last.self_attn, last.input_layernorm(hidden), rotary, layout)
    hidden = hidden[layout.supervised] + attended
    hidden = hidden + last.mlp(last.post_attention_layernorm(hidden))
    return model.lm_head(core.norm(hidden)), layout.targets


def _heads(projection: torch.nn.Module, hidden: torch.Tensor, head_dim: int) -> torch.Tensor:
    return projection(hidden).view(hidden.shape[0], -1, head_dim)


def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return states * cos + rotate_half(states) * sin


def _padded(states: torch.Tensor, slots: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    """``[tokens, heads, dim]`` scattered to ``[rows, heads, width, dim]`` (zeros elsewhere)."""
    block = states.new_zeros(rows * width, *states.shape[1:]).index_copy(0, slots, states)
    return block.view(rows, width, *states.shape[1:]).transpose(1, 2)


def _unpadded(block: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``[rows, heads, width, dim]`` back to ``[tokens, heads*dim]`` at ``slots``."""
    rows, heads, width, dim = block.shape
    return block.transpose(1, 2).reshape(rows * width, heads * dim).index_select(0, slots)


def _keys_values(attention: torch.nn.Module, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                 layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values as ``[batch, heads, length, dim]`` blocks, each row's at its columns."""
    head_dim = attention.head_dim
    keys = _rotate(_heads(attention.k_proj, hidden, head_dim), *rotary)
    values = _heads(attention.v_proj, hidden, head_dim)
    return _key_block(keys, layout), _key_block(values, layout)


def _key_block(states: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``[tokens, heads, dim]`` as ``[batch, heads, length, dim]``: scattered (zeros at padding), or with a
    shared prefix gathered (the prefix copy in every row; padding holds some token's state, never attended)."""
    if layout.prefix is None:
        return _padded(states, layout.real, layout.batch, layout.length)
    rows = states.index_select(0, layout.prefix.key_sources)
    return rows.view(layout.batch, layout.length, *states.shape[1:]).transpose(1, 2)


def _attention_everywhere(attention: torch.nn.Module, hidden: torch.Tensor,
                          rotary: tuple[torch.Tensor, torch.Tensor], layout: TokenLayout) -> torch.Tensor:
    """Causal self-attention output (after ``o_proj``) at every token computed."""
    keys, values = _keys_values(attention, hidden, rotary, layout)
    queries = _rotate(_heads(attention.q_proj, hidden, attention.head_dim), *rotary)
    attend = _attend_per_row if layout.prefix is None else _attend_shared_prefix
    return attention.o_proj(attend(attention, queries, keys, values, layout))


def _attend_per_row(attention: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    layout: TokenLayout) -> torch.Tensor:
    """Every row's queries against its own keys, causal: ``[tokens, heads*dim]``."""
    out = F.scaled_dot_product_attention(_padded(queries, layout.real, layout.batch, layout.length), keys,
                                         values, is_causal=True, scale=attention.scaling, enable_gqa=True)
    return _unpadded(out, layout.real)


def _attend_shared_prefix(attention: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor,
                          values: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """The prefix queries once against the prefix keys (the first row's block holds them), causal; then
    each row's suffix queries against that row's block (the prefix copy and its own keys), causal."""
    prefix = layout.prefix
    length = prefix.length
    head = F.scaled_dot_product_attention(queries[:length].transpose(0, 1)[None], keys[:1, :, :length],
                                          values[:1, :, :length], is_causal=True, scale=attention.scaling,
                                          enable_gqa=True)
    suffix_queries = _padded(queries[length:], prefix.suffix_slots, layout.batch, prefix.suffix_width)
    tail = F.scaled_dot_product_attention(suffix_queries, keys, values, attn_mask=prefix.suffix_mask,
                                          scale=attention.scaling, enable_gqa=True)
    return torch.cat([head[0].transpose(0, 1).reshape(length, -1), _unpadded(tail, prefix.suffix_slots)])


def _attention_at_supervised(attention: torch.nn.Module, hidden: torch.Tensor,
                             rotary: tuple[torch.Tensor, torch.Tensor], layout: TokenLayout) -> torch.Tensor:
    """Self-attention output (after ``o_proj``) at the supervised positions only; keys from every token."""
    keys, values = _keys_values(attention, hidden, rotary, layout)
    cos, sin = (part[layout.supervised] for part in rotary)
    queries = _rotate(_heads(attention.q_proj, hidden[layout.supervised], attention.head_dim), cos, sin)
    max_queries = layout.query_mask.shape[2]
    out = F.scaled_dot_product_attention(_padded(queries, layout.query_slots, layout.batch, max_queries),
                                         keys, values, attn_mask=layout.query_mask, scale=attention.scaling,
                                         enable_gqa=True)
    return attention.o_proj(_unpadded(out, layout.query_slots))
