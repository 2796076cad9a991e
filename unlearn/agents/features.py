"""Context features for learned agents, built from the previous step's :class:`StepStats`.

Losses and gradient norms span orders of magnitude across models and steps, so every raw
value goes through a signed ``log1p``, changes are measured as log-ratios against the first
statistics of the episode, NaN (a statistic that was not measured) becomes 0 and
everything is clipped to ``[-CLIP, CLIP]``; the network then sees inputs of order one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearn.types import StepStats

CLIP = 10.0
NAMES = (
    "retain_loss",  # slog(retain loss)
    "forget_loss",  # slog(forget loss)
    "loss_ratio",  # log(|forget| / |retain|)
    "retain_change",  # log(|retain| / |retain at the first step|)
    "forget_change",  # log(|forget| / |forget at the first step|)
    "retain_grad_norm",  # slog(||g_retain||)
    "forget_grad_norm",  # slog(||g_forget||)
    "grad_cosine",  # cos(g_retain, g_forget), NaN -> 0
    "progress",  # step / budget
    "prev_lambda",  # 2·λ_prev - 1, in [-1, 1]
    "has_stats",  # 0 before the first step, 1 after
)
SIZE = len(NAMES)


def _slog(x: float) -> float:
    return math.copysign(math.log1p(abs(x)), x)


def _logratio(a: float, b: float) -> float:
    return math.log((abs(a) + 1e-8) / (abs(b) + 1e-8))


def _clean(x: float) -> float:
    if math.isnan(x):
        return 0.0
    return min(CLIP, max(-CLIP, x))  # also maps ±inf to ±CLIP


@dataclass
class ContextFeatures:
    """Turns StepStats into a fixed-size float32 vector; remembers the episode's first losses.

    Args:
        lam0: λ reported as "previous λ" before the first step.
    """

    lam0: float = 0.5
    first_retain: float = float("nan")
    first_forget: float = float("nan")

    def reset(self) -> None:
        self.first_retain = self.first_forget = float("nan")

    def __call__(self, stats: StepStats | None) -> torch.Tensor:
        if stats is None:
            raw = [0.0] * SIZE
            raw[NAMES.index("prev_lambda")] = 2.0 * self.lam0 - 1.0
            return torch.tensor(raw, dtype=torch.float32)
        r, f = float(stats.retain_loss), float(stats.forget_loss)
        if math.isnan(self.first_retain) and math.isfinite(r):
            self.first_retain = r
        if math.isnan(self.first_forget) and math.isfinite(f):
            self.first_forget = f
        raw = [
            _slog(r),
            _slog(f),
            _logratio(f, r),
            _logratio(r, self.first_retain),
            _logratio(f, self.first_forget),
            _slog(float(stats.retain_grad_norm)),
            _slog(float(stats.forget_grad_norm)),
            float(stats.grad_cosine),
            float(stats.progress),
            2.0 * float(stats.lam) - 1.0,
            1.0,
        ]
        return torch.tensor([_clean(x) for x in raw], dtype=torch.float32)
