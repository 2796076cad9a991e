"""A coarse λ (schedule, dual ascent, later an RL policy) refined by a variational network.

The coarse agent proposes λ_c; the refining :class:`VariationalAgent` draws u ∈ (0, 1) with
reparameterisation, and::

    λ = sigmoid(logit(λ_c) + max_shift · (2u - 1))

so the refinement is bounded to ±max_shift in logit space and λ keeps a gradient into the
refining network. That network minimises the same objective as the variational agent (the
method's objective through λ + β·KL of its posterior over u); u's prior is the refiner's
prior (uniform by default: any shift within the bound is a priori equally likely).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from unlearn.agents.base import LambdaAgent
from unlearn.agents.options import Opt, OptionError, validate_options
from unlearn.agents.registry import build_agent
from unlearn.agents.variational import VariationalAgent
from unlearn.types import StepStats

_EDGE = 1e-4  # keeps logit(λ_c) finite for a coarse λ of exactly 0 or 1


class HybridAgent(LambdaAgent):
    """λ = sigmoid(logit(coarse λ) + bounded learned shift).

    Args:
        coarse: the agent that sets the coarse λ (any registered agent).
        refiner: the variational agent whose sample u ∈ (0, 1) becomes the shift
            ``max_shift · (2u - 1)``; it also reads logit(λ_c) as an extra feature.
        max_shift: bound of the shift in logit units.

    Options (``agent.options``): ``coarse: {name: ..., options: {...}}`` (default: static
    at ``method.lam``; ``agent.path`` is passed to it), ``refine: {...}`` (variational
    options; ``init_lam`` defaults to 0.5, i.e. no initial shift), ``max_shift``.
    """

    name = "hybrid"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "coarse": Opt({"name": "static"}, "{name: agent, options: {...}}", kind=dict),
        "refine": Opt({}, "options of the refining variational agent", kind=dict),
        "max_shift": Opt(2.0, "bound of the shift in logit units", lo=0.0, hi=20.0, lo_open=True),
    }

    def __init__(
        self, coarse: LambdaAgent, refiner: VariationalAgent | None = None, max_shift: float = 2.0
    ):
        self.coarse = coarse
        self.refiner = (
            refiner if refiner is not None else VariationalAgent(init_lam=0.5, extra_features=1)
        )
        if self.refiner.extra_features != 1:
            raise ValueError(
                "the refiner must read one extra feature: VariationalAgent(extra_features=1)"
            )
        self.max_shift = float(max_shift)
        self.lr = self.refiner.lr
        self.needs_grad_stats = self.coarse.needs_grad_stats or self.refiner.needs_grad_stats
        self.last_coarse = float("nan")

    @classmethod
    def from_options(
        cls, options: dict[str, Any], default_lam: float, path: str = ""
    ) -> HybridAgent:
        spec = options["coarse"]
        unknown = sorted(set(spec) - {"name", "options"})
        bad_types = not isinstance(spec.get("name", "static"), str) or not isinstance(
            spec.get("options") or {}, dict
        )
        if unknown or bad_types:
            raise OptionError("coarse", spec, "a mapping {name: <agent>, options: {...}}")
        coarse = build_agent(
            spec.get("name", "static"),
            spec.get("options") or {},
            default_lam,
            path,
            "agent.options.coarse",
        )
        refine = validate_options(
            VariationalAgent.OPTIONS, options["refine"], 0.5, "agent.options.refine"
        )
        return cls(coarse, VariationalAgent(**refine, extra_features=1), options["max_shift"])

    def _combine(self, lam_c: float | torch.Tensor, stats: StepStats | None) -> torch.Tensor:
        c = torch.as_tensor(lam_c, dtype=torch.float32).clamp(_EDGE, 1 - _EDGE)
        z = torch.log(c) - torch.log1p(-c)
        u = self.refiner.sample(stats, extra=(z / math.log(1 / _EDGE)).reshape(1))
        return torch.sigmoid(z + self.max_shift * (2 * u - 1))

    def reset(self, seed: int) -> float:
        lam_c = self.coarse.reset(seed)
        self.refiner.reset(seed + 1)  # decorrelated from a learned coarse agent's stream
        c = min(1 - _EDGE, max(_EDGE, float(lam_c)))
        z = math.log(c / (1 - c))
        u = self.refiner.mean(None, extra=torch.tensor([z / math.log(1 / _EDGE)]))
        return 1 / (1 + math.exp(-(z + self.max_shift * (2 * u - 1))))

    def act(self, stats: StepStats | None) -> torch.Tensor:
        lam_c = self.coarse.act(stats)
        self.last_coarse = float(lam_c.detach() if isinstance(lam_c, torch.Tensor) else lam_c)
        if self.refiner.objective == "utility":
            self.refiner.begin_window()
            return self._combine(lam_c, stats).detach()
        return self._combine(lam_c, stats)

    def bind(self, unlearner) -> None:
        """Forward the unlearner to the coarse agent (a policy reads its proxies) and to the
        refiner (its objective may need them)."""
        self.coarse.bind(unlearner)
        self.refiner.bind(unlearner)

    def lambda_objective(self, terms) -> torch.Tensor | None:
        """The refiner's objective: the draw's λ is this agent's, whose graph reaches it."""
        return self.refiner.lambda_objective(terms)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.coarse.parameters(), *self.refiner.parameters()]

    def regularizer(self) -> torch.Tensor | None:
        regs = [r for r in (self.coarse.regularizer(), self.refiner.regularizer()) if r is not None]
        return sum(regs[1:], regs[0]) if regs else None

    def wants_stop(self, stats: StepStats | None) -> bool:
        """The coarse agent decides when the run ends (a policy's stop action)."""
        return self.coarse.wants_stop(stats)

    def update(self, stats: StepStats) -> None:
        self.coarse.update(stats)
        self.refiner.update(stats)
