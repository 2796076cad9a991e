"""A constant λ: the baseline, and what the Optuna search tunes."""

from __future__ import annotations

from typing import ClassVar

from unlearn.agents.base import LambdaAgent
from unlearn.agents.options import DEFAULT_LAM, Opt, check_lam
from unlearn.types import StepStats


class StaticAgent(LambdaAgent):
    """The same λ at every step.

    Args:
        lam: the constant λ in [0, 1] (default ``method.lam``).
    """

    name = "static"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "lam": Opt(DEFAULT_LAM, "the constant lambda", lo=0.0, hi=1.0),
    }

    def __init__(self, lam: float = 0.5):
        self.lam = check_lam("lam", lam)

    def reset(self, seed: int) -> float:
        return self.lam

    def act(self, stats: StepStats | None) -> float:
        return self.lam
