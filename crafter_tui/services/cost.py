"""What an LLM rollout will cost before it starts (the guide's users pay per token).

Prompt tokens per turn are measured, not guessed: a real Crafter observation in the run's format,
with the run's system prompt, the tools and ``history_turns`` past turns, counted with the model's
encoding (``dataset.tokens``). Completion tokens per turn are those of a typical ``interact`` call.
Turns per episode are the run's cap (``max_turns``, else ``max_steps``: every turn takes at least one
step), so the figure is an upper bound; the run's actual tokens are recorded next to it.

A service, not part of the rollout: it reads the rollout's spec and counts with the dataset's
token counter, a layer above the rollout (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import random

from pydantic import BaseModel

from crafter_tui.agents.base import HistoryTurn
from crafter_tui.agents.prompting import SYSTEM_PROMPTS, TOOLS, build_messages, interact_message, tool_result_text
from crafter_tui.dataset.tokens import counter_for, example_tokens, message_tokens, resolve_model
from crafter_tui.rollout.spec import RolloutSpec

#: OpenAI list prices, USD per 1M tokens (input, output), https://openai.com/api/pricing (checked 2025-06).
INFERENCE_PRICE_DATE = "2025-06"
INFERENCE_PRICE_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4.1-2025-04-14": (2.00, 8.00),
    "gpt-4.1-mini-2025-04-14": (0.40, 1.60),
    "gpt-4.1-nano-2025-04-14": (0.10, 0.40),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-3.5-turbo-0125": (0.50, 1.50),
}
#: Models OpenAI fine-tuned (``ft:<base>:...``) are billed at these rates instead.
FINE_TUNED_PRICE_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4.1-2025-04-14": (3.00, 12.00),
    "gpt-4.1-mini-2025-04-14": (0.80, 3.20),
    "gpt-4.1-nano-2025-04-14": (0.20, 0.80),
    "gpt-4o-2024-08-06": (3.75, 15.00),
    "gpt-4o-mini-2024-07-18": (0.30, 1.20),
    "gpt-3.5-turbo-0125": (3.00, 6.00),
}
TYPICAL_REPLY = interact_message(["move_right", "do", "do"], "A tree is to the east: walk to it and collect wood.",
                                 "call_0")
MEASURE_STEPS = 12  # the observation measured is the world a few seeded random steps in (an inventory, a view)


class RunCostEstimate(BaseModel):
    model: str
    episodes: int
    turns_per_episode: int
    prompt_tokens_per_turn: int
    completion_tokens_per_turn: int
    prompt_tokens: int
    completion_tokens: int
    usd: float
    price_date: str = INFERENCE_PRICE_DATE
    encoding: str

    def line(self) -> str:
        return (f"cost estimate: at most {self.episodes} episodes x {self.turns_per_episode} turns: "
                f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens "
                f"({self.prompt_tokens_per_turn:,} + {self.completion_tokens_per_turn:,} per turn, measured with "
                f"{self.encoding}) = {usd_text(self.usd)} at {self.model}'s list price ({self.price_date})")


def usd_text(usd: float) -> str:
    """Dollars with the cents that matter (a short run costs fractions of a cent)."""
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def inference_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for an OpenAI model, alias or ``ft:`` model; None if unpriced."""
    if model.startswith("ft:") and model.count(":") >= 2:
        return FINE_TUNED_PRICE_PER_MILLION.get(resolve_model(model.split(":")[1]))
    return INFERENCE_PRICE_PER_MILLION.get(resolve_model(model))


def dollars(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = inference_price(model)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 4)


def measured_prompt_tokens(spec: RolloutSpec) -> tuple[int, str]:
    """Tokens of one full-history prompt of this run (system, tools, ``history_turns`` past turns, the
    observation), measured on a real observation of its first seed; and the encoding's name."""
    from crafter_tui.world.env import CrafterWorld
    from crafter_tui.world.rules import ACTIONS
    from crafter_tui.world.text_obs import OBSERVATION_FORMATS

    world = CrafterWorld(spec.difficulty, max_steps=spec.max_steps)
    state = world.reset(spec.seed)
    rng = random.Random(spec.seed)
    for _ in range(MEASURE_STEPS):
        outcome = world.step(rng.randrange(len(ACTIONS)))
        state = outcome.state
        if outcome.done:
            break
    text = OBSERVATION_FORMATS[spec.observation](state, turn=MEASURE_STEPS + 1, max_steps=spec.max_steps)
    system = spec.system_prompt or SYSTEM_PROMPTS[spec.observation]
    past = HistoryTurn(observation=text, assistant=TYPICAL_REPLY,
                       tool_result=tool_result_text(["move_right", "do", "do"], [], False))
    history = [past] * spec.history_turns
    messages = build_messages(system, history, text, spec.history_turns)
    counter = counter_for(resolve_model(spec.model))
    total, _ = example_tokens(counter, messages, TOOLS if spec.actions == "tools" else None)
    return total, counter.name


def estimate_run_cost(spec: RolloutSpec, episodes: int | None = None) -> RunCostEstimate | None:
    """The estimate for an LLM run of a priced model (None for built-in agents and unpriced models)."""
    if spec.agent not in ("openai", "dagger") or inference_price(spec.model) is None:
        return None
    prompt, encoding = measured_prompt_tokens(spec)
    completion = message_tokens(counter_for(resolve_model(spec.model)), TYPICAL_REPLY) - 3
    turns = spec.max_turns or spec.max_steps
    n = episodes or spec.episodes
    prompt_total, completion_total = n * turns * prompt, n * turns * completion
    usd = dollars(spec.model, prompt_total, completion_total) or 0.0
    return RunCostEstimate(model=spec.model, episodes=n, turns_per_episode=turns, prompt_tokens_per_turn=prompt,
                           completion_tokens_per_turn=completion, prompt_tokens=prompt_total,
                           completion_tokens=completion_total, usd=usd, encoding=encoding)
