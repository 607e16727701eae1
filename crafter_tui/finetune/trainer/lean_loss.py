"""SFTTrainer with the plain shifted cross-entropy, for the built-in models on CPU.

Why: TRL's default loss runs a chunked, fused LM-head kernel (``fused_lm_head=True``) built
to keep big vocabularies off a GPU's memory. For a built-in model (a ~1k-token vocabulary,
two layers) on a CPU it costs more than the transformer itself: training crafter-tiny on
brief Crafter turns ran at ~5.4k tokens/s with it and ~10k with the model's own logits and
a cross-entropy over the assistant positions only. The metrics TRL logs (``mean_token_accuracy``,
``entropy``, ``num_tokens``) are kept with the same meaning, so events and charts do not change.

When the model and batch allow it (``lean_forward``), the logits are computed at the supervised
positions only, skipping padding and the last layer's unread positions: crafter-tiny on the
demo's brief rows went from ~6k to ~11k tokens/s (1 thread), same loss and gradients up to rounding,
and to ~16k once the rows' shared prompt prefix is computed once per batch (``bench_trainer.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from crafter_tui.finetune.trainer.lean_forward import supervised_logits

IGNORE_INDEX = -100


def shifted_loss_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits at the supervised positions, their target ids, the summed cross-entropy).

    Position t predicts token t+1; only targets that are not ``IGNORE_INDEX`` count, so the
    softmax runs over a few dozen rows per batch instead of every prompt token.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    selected = logits[:, :-1][mask].float()
    wanted = targets[mask]
    return selected, wanted, F.cross_entropy(selected, wanted, reduction="sum")


class LeanLossSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose ``compute_loss`` is the model's logits plus a masked cross-entropy."""

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):  # noqa: ANN201 - Trainer's contract
        mode = "train" if model.training else "eval"
        attention_mask = inputs.get("attention_mask")
        lean = None if return_outputs or inputs.get("position_ids") is not None else \
            supervised_logits(model, inputs["input_ids"], attention_mask, inputs["labels"])
        if lean is not None:
            outputs = None
            selected, wanted = lean[0].float(), lean[1]
            loss_sum = F.cross_entropy(selected, wanted, reduction="sum")
        else:  # logits wanted for every position, or a model/batch the lean forward does not reproduce
            outputs = model(input_ids=inputs["input_ids"], attention_mask=attention_mask,
                            position_ids=inputs.get("position_ids"), use_cache=False)
            selected, wanted, loss_sum = shifted_loss_terms(outputs.logits, inputs["labels"])
        count = wanted.numel() if num_items_in_batch is None else num_items_in_batch
        loss = loss_sum / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        self._record_metrics(mode, selected.detach(), wanted, attention_mask, inputs)
        return (loss, outputs) if return_outputs else loss

    def _record_metrics(self, mode: str, selected: torch.Tensor, wanted: torch.Tensor,
                        attention_mask: torch.Tensor | None, inputs: dict[str, Any]) -> None:
        """The same entries TRL's own ``compute_loss`` records (averaged per logging window)."""
        valid = wanted.numel()
        if valid:
            log_probs = torch.log_softmax(selected, dim=-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1).mean().item()
            accuracy = (selected.argmax(-1) == wanted).float().mean().item()
        else:
            entropy = accuracy = 0.0
        self._metrics[mode]["entropy"].append(entropy)
        self._metrics[mode]["mean_token_accuracy"].append(accuracy)
        if mode == "train":
            tokens = attention_mask.sum().item() if attention_mask is not None else inputs["input_ids"].numel()
            self._total_train_tokens += int(tokens)
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
