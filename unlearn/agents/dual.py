"""λ as a Lagrange multiplier updated by dual ascent (KL-constrained unlearning, Khalafi et al.).

The primal problem keeps the model close to the pretrained one subject to a separation
constraint from the forget data; λ weighs that constraint. After every step::

    λ ← clip(λ + η · violation, 0, lam_max)

**Sign:** violation > 0 means the constraint is violated (not forgotten enough), so λ rises;
violation < 0 means it holds with slack, so λ falls towards 0 (a satisfied constraint has a
zero multiplier).
"""

from __future__ import annotations

import math
from typing import ClassVar

from unlearn.agents.base import LambdaAgent
from unlearn.agents.options import DEFAULT_LAM, Opt, check_lam
from unlearn.types import StepStats


class DualAscentAgent(LambdaAgent):
    """Projected dual ascent on the constraint ``forget_loss >= target``.

    The violation of a step is, in order of preference:

    1. ``stats.extras[violation_key]`` when the method reports one (positive = violated);
    2. ``target - forget_loss`` with ``target`` an absolute forget denoising loss;
    3. the same with ``target = target_ratio · (forget loss of the episode's first step)``.

    With ``relative`` the difference of 2./3. is divided by ``target``, so ``eta`` does not
    depend on the loss scale. A NaN violation leaves λ unchanged.

    Args:
        lam0: the initial multiplier (default ``method.lam``), clipped to [0, lam_max].
        eta: dual step size η.
        lam_max: upper bound of λ (λ stays in [0, lam_max] ⊂ [0, 1]).
        target: forget denoising loss to reach (absolute); null = use ``target_ratio``.
        target_ratio: target as a multiple of the first step's forget loss.
        relative: divide ``target - forget_loss`` by ``target``.
        violation_key: key of a method-reported violation in ``StepStats.extras``.
    """

    name = "dual"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "lam0": Opt(DEFAULT_LAM, "initial multiplier", lo=0.0, hi=1.0),
        "eta": Opt(0.1, "dual step size", lo=0.0, lo_open=True),
        "lam_max": Opt(1.0, "upper bound of lambda", lo=0.0, hi=1.0, lo_open=True),
        "target": Opt(None, "forget loss to reach (absolute)", lo=0.0, lo_open=True, optional=True),
        "target_ratio": Opt(1.5, "target = ratio x first forget loss", lo=0.0, lo_open=True),
        "relative": Opt(True, "divide the violation by the target", kind=bool),
        "violation_key": Opt("violation", "StepStats.extras key of a reported violation", kind=str),
    }

    def __init__(
        self,
        lam0: float = 0.5,
        eta: float = 0.1,
        lam_max: float = 1.0,
        target: float | None = None,
        target_ratio: float = 1.5,
        relative: bool = True,
        violation_key: str = "violation",
    ):
        self.lam_max = check_lam("lam_max", lam_max)
        self.lam0 = min(check_lam("lam0", lam0), self.lam_max)
        self.eta = float(eta)
        self.target = None if target is None else float(target)
        self.target_ratio = float(target_ratio)
        self.relative = relative
        self.violation_key = violation_key
        self.reset(0)

    def violation(self, stats: StepStats) -> float:
        """Positive when the constraint is violated (λ should rise); NaN when unknown."""
        reported = (getattr(stats, "extras", None) or {}).get(self.violation_key)
        if reported is not None and math.isfinite(float(reported)):
            return float(reported)
        f = float(stats.forget_loss)
        if self.target is None and math.isnan(self._first_forget) and math.isfinite(f):
            self._first_forget = f
        target = self.target if self.target is not None else self.target_ratio * self._first_forget
        v = target - f
        if self.relative and math.isfinite(target) and target != 0:
            v /= abs(target)
        return v

    def reset(self, seed: int) -> float:
        self.lam = self.lam0
        self._first_forget = float("nan")
        return self.lam

    def act(self, stats: StepStats | None) -> float:
        return self.lam

    def update(self, stats: StepStats) -> None:
        v = self.violation(stats)
        if math.isfinite(v):
            self.lam = min(self.lam_max, max(0.0, self.lam + self.eta * v))
