"""The trainer behind every self-hosted fine-tune: TRL SFT on built-in or pretrained models.

Public entry points: ``TrainJob``, ``run_training``, ``TrainEvent``, ``TrainResult``.
"""

from crafter_tui.finetune.trainer.metrics import CheckpointInfo, TrainEvent, TrainMetrics, TrainResult
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, is_builtin
from crafter_tui.finetune.trainer.train import LoraSettings, TrainJob, run_training

__all__ = ["BUILTIN_SIZES", "CheckpointInfo", "LoraSettings", "TrainEvent", "TrainJob", "TrainMetrics",
           "TrainResult", "is_builtin", "run_training"]
