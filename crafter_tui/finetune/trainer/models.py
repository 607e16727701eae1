"""The built-in model sizes: Qwen2-architecture models built from a config, no downloads.

Sizes are chosen for a 2-core CPU: a small vocabulary (the tokenizer is trained on the
data) keeps the tied embedding / output projection cheap, grouped-query attention keeps
the KV cache small for fast generation, and the layer count stays low so a training step
on ~700-token Crafter prompts is quick. ``crafter-tiny`` (~1.1M parameters in two wide layers:
per CPU-minute, depth bought nothing on Crafter turns while costing time per token) is the
demo's model and the one for quick loops; ``crafter-small`` is for longer runs and GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True, slots=True)
class BuiltinSize:
    """Shape of one built-in model; ``vocab_size`` is the tokenizer's training target."""

    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    default_learning_rate: float


BUILTIN_SIZES: dict[str, BuiltinSize] = {
    # 3e-4: at 3e-3 the two-layer shape learned little beyond the action frequencies (its first
    # action barely depended on the observation: 25% greedy accuracy on its own training turns,
    # 47% at 1e-3, 51% at 3e-4 after one epoch), and the demo's trained agent went from ~16% to
    # ~22% progression with nothing else changed
    "crafter-tiny": BuiltinSize("crafter-tiny", 1024, 192, 2, 6, 2, 576, 3e-4),
    "crafter-small": BuiltinSize("crafter-small", 2048, 320, 8, 5, 5, 960, 1e-3),
}


def is_builtin(model: str) -> bool:
    """Whether ``model`` names a built-in size (trained from scratch) rather than weights."""
    return model in BUILTIN_SIZES


def build_model(size: BuiltinSize, tokenizer: PreTrainedTokenizerBase, seed: int) -> Qwen2ForCausalLM:
    """A randomly initialised model of ``size`` whose vocabulary matches ``tokenizer``.

    Initialisation is seeded here so the same seed gives the same starting weights no
    matter what ran before in the process.
    """
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_sliding_window=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
