"""A fine-tune job's progress (step N/total, epoch, tokens/s, ETA), derived from what its host reports.

Hosts report ``total_steps`` with the metrics and the epochs in the hyperparameters; the clock comes from
the job's creation time or its first event. Nothing here is guessed: a figure the host did not report is
left out rather than estimated from nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text


@dataclass(frozen=True)
class JobProgress:
    step: int
    total: int | None
    epoch: int | None
    epochs: int | None
    tokens_per_s: float | None
    eta_s: float | None

    def describe(self) -> Text:
        text = Text()
        text.append(f"step {self.step:,}" + (f"/{self.total:,}" if self.total else ""), style="bold")
        if self.epoch is not None and self.epochs:
            text.append(f"  epoch {self.epoch}/{self.epochs}")
        if self.tokens_per_s is not None:
            text.append(f"  {self.tokens_per_s:,.0f} tokens/s")
        if self.eta_s is not None:
            text.append(f"  ETA {format_duration(self.eta_s)}", style="cyan")
        return text


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _epochs(hyperparameters: dict[str, Any]) -> int | None:
    for key in ("n_epochs", "epochs", "num_train_epochs"):
        value = hyperparameters.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def job_progress(detail: Any, metrics: list[Any], events: list[Any], *, now: float) -> JobProgress | None:
    """The progress of a job from its ``JobDetail``, metric points and events; None before any step."""
    if not metrics:
        return None
    step = max(point.step for point in metrics)
    total = next((point.total_steps for point in reversed(metrics) if point.total_steps), None)
    info = getattr(detail, "info", None)
    hyper = dict(getattr(info, "hyperparameters", None) or getattr(getattr(detail, "entry", None),
                                                                    "hyperparameters", None) or {})
    epochs = _epochs(hyper)
    epoch = min(epochs, step * epochs // total + 1) if epochs and total else None
    started = getattr(info, "created_at", None) or (min(event.created_at for event in events) if events else None)
    done = bool(getattr(info, "done", False))
    elapsed = (now - started) if started else None
    tokens = getattr(info, "trained_tokens", None)
    tokens_per_s = tokens / elapsed if tokens and elapsed and elapsed > 0 else None
    eta = None
    if total and elapsed and elapsed > 0 and 0 < step < total and not done:
        eta = (total - step) * elapsed / step
    return JobProgress(step=step, total=total, epoch=epoch, epochs=epochs, tokens_per_s=tokens_per_s, eta_s=eta)
