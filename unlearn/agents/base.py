"""The plug-in point for choosing λ."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from unlearn.types import LossTerms, StepStats


class LambdaAgent(ABC):
    """Chooses λ in [0, 1] before every optimiser step.

    ``reset(seed)`` starts an episode and returns λ0; ``act(stats)`` gets the statistics of
    the previous step (None before the first) and returns λ for the next one. Agents that
    learn inside the loop expose ``parameters()`` (optimised jointly with the model on the
    method's objective plus ``regularizer()``) and/or use ``update(stats)`` after each step.
    ``act`` may return a tensor that carries gradient (variational agent).
    """

    name: ClassVar[str]
    needs_grad_stats: ClassVar[bool] = False
    #: ``agent.options`` this agent accepts: name -> :class:`unlearn.agents.options.Opt`.
    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_options(
        cls, options: dict[str, Any], default_lam: float, path: str = ""
    ) -> LambdaAgent:
        """Build from validated options (defaults filled in); ``path`` is ``agent.path``."""
        return cls(**options)

    @abstractmethod
    def reset(self, seed: int) -> float: ...

    @abstractmethod
    def act(self, stats: StepStats | None) -> float | torch.Tensor: ...

    def bind(self, unlearner: Any) -> None:
        """Called by the :class:`~unlearn.unlearner.Unlearner` that runs this agent; agents
        that read the run itself (the policy agent's proxies) keep it."""
        return None

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def regularizer(self) -> torch.Tensor | None:
        """Extra loss term for learnable agents (e.g. β·KL), from the last ``act``."""
        return None

    def lambda_objective(self, terms: LossTerms) -> torch.Tensor | None:
        """Extra loss term, given this step's method terms, through which a learned λ gets
        its gradient (the variational agent's unbiased estimator); None for most agents."""
        return None

    def update(self, stats: StepStats) -> None:
        """Observe the finished step (dual ascent updates its multiplier here)."""
        return None

    def wants_stop(self, stats: StepStats | None) -> bool:
        """Asked before each step: True ends the run here (an RL policy with a stop action,
        once it judges forgetting done); the run then reports the steps it used."""
        return False
