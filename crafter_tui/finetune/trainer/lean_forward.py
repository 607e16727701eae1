"""A training forward for the built-in Qwen2 models that computes only what the loss reads.

Why: the SFT loss reads the logits of the few positions whose next token is an assistant
token (~9% of a brief Crafter row). The standard forward runs every layer, the final norm
and the LM head on every position, padding included. Here, with the same weights and the
same arithmetic per position:

- padding is dropped: every matmul runs on the real tokens only (rows are right-padded,
  so causal attention over the padded block never lets a real query see a padded key);
- the LAST layer computes keys and values for every token (the supervised queries attend
  to them) but its queries, attention output, MLP, final norm and LM head only at the
  supervised positions: nothing else there reaches the loss.

The loss, its gradients and TRL's metrics (entropy, token accuracy over the same positions)
are those of the full forward up to float rounding (a test compares them); on crafter-tiny
and demo rows this is about half the floating-point work of a step. Models or batches it
cannot reproduce exactly (left padding, packed rows, sliding windows, attention dropout,
other architectures) return None and the caller runs the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    real: torch.Tensor  # flat indices (into batch*length) of real tokens, row-major
    positions: torch.Tensor  # position id of each real token
    supervised: torch.Tensor  # indices into ``real`` of positions whose next token is a target
    targets: torch.Tensor  # the target id of each supervised position
    query_slots: torch.Tensor  # flat index (into batch*max_queries) of each supervised position
    query_mask: torch.Tensor  # [batch, 1, max_queries, length]: which keys each padded query slot sees


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


def supervised_logits(model: Qwen2ForCausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(logits at the supervised positions, their targets), row-major like ``logits[:, :-1][mask]``.

    None when this batch or model needs the full forward (see the module docstring).
    """
    if not supports_lean_forward(model):
        return None
    layout = token_layout(attention_mask, labels)
    if layout is None:
        return None
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
    head_dim = attention.head_dim
    keys = _rotate(_heads(attention.k_proj, hidden, head_dim), *rotary)
    values = _heads(attention.v_proj, hidden, head_dim)
    return (_padded(keys, layout.real, layout.batch, layout.length),
            _padded(values, layout.real, layout.batch, layout.length))


def _attention_everywhere(attention: torch.nn.Module, hidden: torch.Tensor,
                          rotary: tuple[torch.Tensor, torch.Tensor], layout: TokenLayout) -> torch.Tensor:
    """Causal self-attention output (after ``o_proj``) at every real token."""
    keys, values = _keys_values(attention, hidden, rotary, layout)
    queries = _padded(_rotate(_heads(attention.q_proj, hidden, attention.head_dim), *rotary),
                      layout.real, layout.batch, layout.length)
    out = F.scaled_dot_product_attention(queries, keys, values, is_causal=True, scale=attention.scaling,
                                         enable_gqa=True)
    return attention.o_proj(_unpadded(out, layout.real))


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
