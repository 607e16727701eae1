"""A lean forward pass for Qwen2-architecture models, for fast greedy decoding (CPU or GPU).

Why not ``model(...)``: for the built-in models a Hugging Face forward per generated token
costs many times its arithmetic (``benchmarks/bench_generation.py`` times decoding). The rest is
per-call Python (output capturing, mask building, kwargs plumbing) and ``DynamicCache``
appending with ``torch.cat`` (the whole cache is copied at every token). This module runs
the same computation with fewer, larger ops (q/k/v and gate/up projections stacked into one
matrix each, which the model's own projections then view, so the weights are not held twice:
build a new decoder after replacing the model's weights) and a pre-sized KV cache written in
place. Every tensor it makes (ids, cache, rotary tables, masks) is made on the weights' device.

It mirrors ``transformers.models.qwen2.modeling_qwen2`` op for op (RMSNorm in float32, the
same rotary tables, SDPA with the key/value heads packed for a single query token), so its
logits match the Hugging Face forward to float rounding; ``tests/test_finetune_inference_fast.py``
checks the tokens against ``model.generate``, and ``bench_generation.py --verify`` does on a
GPU. In float32 the greedy tokens equal ``model.generate``'s on CUDA too. In bfloat16 the
fused projections and packed attention run other GPU kernels than
the Hugging Face forward, whose results can differ by one bfloat16 rounding step, so a
near-tie between the top two logits can resolve the other way (seen on random weights, whose
logits are flat). Models it cannot mirror exactly (another architecture, sliding-window
layers, scaled rotary embeddings) are reported by
``Qwen2Decoder.supports`` and the caller falls back to the plain forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Cache positions are allocated in steps of this many tokens (re-allocation copies the cache).
_CAPACITY_STEP = 512


@dataclass(slots=True)
class _Layer:
    """The weights of one decoder layer, the projections that share an input fused into one matrix."""

    input_norm: torch.Tensor
    qkv_weight: torch.Tensor  # q, k and v projections stacked: one matmul instead of three
    qkv_bias: torch.Tensor | None
    o_weight: torch.Tensor
    post_norm: torch.Tensor
    gate_up_weight: torch.Tensor  # gate and up projections stacked
    down_weight: torch.Tensor


def _unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why ``model`` cannot be run by this decoder exactly, or None when it can."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "qwen2":
        return "not a Qwen2 model"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rotary type {rope.get('rope_type')!r}"
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or []):
        return "sliding-window layers"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return "unexpected module layout"
    if getattr(inner.rotary_emb, "attention_scaling", 1.0) != 1.0:
        return "scaled rotary embeddings"
    return None


def _fuse(parameters: list[torch.Tensor]) -> torch.Tensor:
    """The parameters stacked along dim 0, each parameter then made a view of its rows.

    The model computes exactly as before (same values), and the stacked copy costs no memory:
    without this a 7B model would hold its q/k/v and gate/up weights twice (~8 GB in bfloat16).
    """
    fused = torch.cat([p.detach() for p in parameters])
    start = 0
    for parameter in parameters:
        rows = parameter.shape[0]
        parameter.data = fused[start:start + rows]
        start += rows
    return fused


class Qwen2Decoder:
    """Greedy/sampled decoding state for one Qwen2 model: weights, rotary tables and a KV cache.

    The cache holds ``length`` positions; ``forward`` appends tokens after them and
    ``truncate`` keeps a prefix (the prompt cache of ``LoadedModel``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        reason = _unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"fast decoder unsupported: {reason}")
        config = model.config
        inner = model.model
        self.model = model
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim ** -0.5
        self.eps = config.rms_norm_eps
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.inv_freq = inner.rotary_emb.inv_freq
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.layers = [self._layer(layer) for layer in inner.layers[: config.num_hidden_layers]]
        self.length = 0
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._cos = torch.empty(0, self.head_dim, dtype=self.dtype, device=self.device)
        self._sin = torch.empty(0, self.head_dim, dtype=self.dtype, device=self.device)

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        return _unsupported_reason(model) is None

    @staticmethod
    def _layer(layer: torch.nn.Module) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        qkv_weight = _fuse([p.weight for p in projections])
        if all(p.bias is not None for p in projections):  # Qwen2: all three have one
            qkv_bias = _fuse([p.bias for p in projections])
        elif any(p.bias is not None for p in projections):
            qkv_bias = torch.cat([p.bias if p.bias is not None else p.weight.new_zeros(p.out_features)
                                  for p in projections])
        else:
            qkv_bias = None
        return _Layer(layer.input_layernorm.weight, qkv_weight, qkv_bias, attn.o_proj.weight,
                      layer.post_attention_layernorm.weight,
                      _fuse([mlp.gate_proj.weight, mlp.up_proj.weight]), mlp.down_proj.weight)

    # -- cache ------------------------------------------------------------------------------
    def truncate(self, length: int) -> None:
        """Forget every cached position from ``length`` on (the values are overwritten later)."""
        self.length = max(0, min(length, self.length))

    def _reserve(self, needed: int) -> None:
        """Grow the cache and rotary tables to hold ``needed`` positions, keeping what is cached."""
        capacity = self._cos.shape[0]
        if needed <= capacity:
            return
        capacity = -(-needed // _CAPACITY_STEP) * _CAPACITY_STEP
        shape = (1, self.num_kv_heads, capacity, self.head_dim)
        keys = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        values = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        for old, new in zip(self._keys + self._values, keys + values, strict=False):  # empty at first
            new[:, :, : self.length] = old[:, :, : self.length]
        self._keys, self._values = keys, values
        # Exactly Qwen2RotaryEmbedding.forward: float positions times inv_freq, duplicated, cos/sin.
        positions = torch.arange(capacity, dtype=torch.float32, device=self.inv_freq.device)
        freqs = positions[:, None] * self.inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        sin = emb.sin()
        sin[:, : self.head_dim // 2].neg_()  # for the roll form of rotate_half (see _layer_forward)
        self._cos, self._sin = emb.cos().to(self.dtype), sin.to(self.dtype)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, ids: list[int]) -> torch.Tensor:
        """Run ``ids`` after the cached positions; the logits of the last one (vocabulary,)."""
        count = len(ids)
        start, end = self.length, self.length + count
        self._reserve(end)
        hidden = F.embedding(torch.tensor([ids], dtype=torch.long, device=self.device), self.embed)
        cos = self._cos[start:end][None, None]
        sin = self._sin[start:end][None, None]
        mask = self._mask(start, count)
        for index, layer in enumerate(self.layers):
            hidden = self._layer_forward(index, layer, hidden, cos, sin, start, end, mask)
        last = self._rms_norm(hidden[:, -1:], self.final_norm)
        self.length = end
        return F.linear(last, self.lm_head)[0, -1]

    def _mask(self, start: int, count: int) -> torch.Tensor | None:
        """The additive causal mask for ``count`` new tokens after ``start`` cached ones.

        None when SDPA needs none: one token sees everything cached, and a prefill from an
        empty cache uses ``is_causal`` (``_attend`` decides).
        """
        if count == 1 or start == 0:
            return None
        rows = torch.arange(count, device=self.device)[:, None] + start
        cols = torch.arange(start + count, device=self.device)[None, :]
        mask = torch.zeros(count, start + count, dtype=self.dtype, device=self.device)
        return mask.masked_fill_(cols > rows, float("-inf"))

    def _rms_norm(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # Exactly Qwen2RMSNorm.forward (the dtype round trip only when not already float32).
        if hidden.dtype != torch.float32:
            states = hidden.to(torch.float32)
            states = states * torch.rsqrt(states.pow(2).mean(-1, keepdim=True) + self.eps)
            return weight * states.to(hidden.dtype)
        return weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps))

    def _layer_forward(self, index: int, layer: _Layer, hidden: torch.Tensor, cos: torch.Tensor,
                       sin: torch.Tensor, start: int, end: int, mask: torch.Tensor | None) -> torch.Tensor:
        count = hidden.shape[1]
        heads, rotated = self.num_heads, self.num_heads + self.num_kv_heads
        normed = self._rms_norm(hidden, layer.input_norm)
        qkv = F.linear(normed, layer.qkv_weight, layer.qkv_bias).view(1, count, -1, self.head_dim).transpose(1, 2)
        query_key = qkv[:, :rotated]
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated), exactly.
        query_key = query_key * cos + query_key.roll(self.head_dim // 2, dims=-1) * sin
        keys, values = self._keys[index], self._values[index]
        keys[:, :, start:end] = query_key[:, heads:]
        values[:, :, start:end] = qkv[:, rotated:]
        attended = self._attend(query_key[:, :heads], keys[:, :, :end], values[:, :, :end], mask, start == 0)
        hidden = hidden + F.linear(attended.transpose(1, 2).reshape(1, count, -1), layer.o_weight)
        normed = self._rms_norm(hidden, layer.post_norm)
        gate, up = F.linear(normed, layer.gate_up_weight).chunk(2, dim=-1)
        return hidden + F.linear(F.silu(gate) * up, layer.down_weight)

    def _attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
                from_empty: bool) -> torch.Tensor:
        """SDPA as ``transformers.integrations.sdpa_attention`` calls it for these shapes."""
        count = query.shape[2]
        if count == 1:
            if self.groups > 1:  # the query heads of one key/value head as a short "sequence"
                packed = query.reshape(1, self.num_kv_heads, self.groups, self.head_dim)
                out = F.scaled_dot_product_attention(packed, keys, values, scale=self.scaling)
                return out.reshape(1, self.num_heads, 1, self.head_dim)
            return F.scaled_dot_product_attention(query, keys, values, scale=self.scaling)
        if self.groups > 1:
            keys = keys.repeat_interleave(self.groups, dim=1)
            values = values.repeat_interleave(self.groups, dim=1)
        if from_empty:
            return F.scaled_dot_product_attention(query, keys, values, scale=self.scaling, is_causal=True)
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=self.scaling)

