"""The ``utility`` objective of the variational agent: a contextual bandit over λ.

Every ``every`` optimiser steps the bound unlearner's fixed-noise proxies (the first
``images`` of each proxy batch: one forward each) are measured and the window of steps since
the last measurement gets the reward::

    r = Δ proxy_forget / proxy_forget_0  −  β · Δ proxy_retain / proxy_retain_0

(forgetting progress minus β·quality loss, both relative to the episode's start). The
posterior is trained by REINFORCE on the draws of that window: ``−A · mean_j log q_φ(u_j|c_j)``
with the advantage ``A`` = reward minus a running baseline, divided by a running scale,
clipped to ±5. The draws' log-probabilities are recomputed with the current network (the
window is a few steps long, so the policy barely moved; the graph of an old forward cannot
be reused once the optimiser stepped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

_DECAY = 0.9  # running baseline and scale: about the last 10 windows
_ADV_CLIP = 5.0


@dataclass
class ProxyReward:
    """Windows of (context, draw) pairs and their proxy rewards.

    Args:
        beta: weight of the quality loss (relative retain-proxy rise) against forgetting.
        every: optimiser steps per window (one proxy measurement each).
        images: proxy images of each batch measured (0 = the whole proxy batch).
    """

    beta: float = 1.0
    every: int = 10
    images: int = 32
    window: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    first: tuple[float, float] | None = None
    prev: tuple[float, float] | None = None
    baseline: float | None = None
    scale: float = 0.0
    rewards: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.window, self.first, self.prev = [], None, None
        self.baseline, self.scale, self.rewards = None, 0.0, []

    def measure(self, unlearner) -> tuple[float, float]:
        return unlearner.proxies(self.images or None)

    def start(self, unlearner) -> None:
        """The episode's first measurement (before the first step)."""
        if self.first is None:
            self.first = self.prev = self.measure(unlearner)

    def record(self, context: torch.Tensor, draw: torch.Tensor) -> None:
        self.window.append((context.detach(), draw.detach()))

    def close(self, unlearner, step: int) -> tuple[list, float] | None:
        """After optimiser step ``step``: at a window's end, its draws and their advantage."""
        if self.first is None or step % self.every or not self.window:
            return None
        now = self.measure(unlearner)
        (r0, f0), (rp, fp), (r, f) = self.first, self.prev, now
        self.prev = now
        reward = (f - fp) / (abs(f0) or 1.0) - self.beta * (r - rp) / (abs(r0) or 1.0)
        if not math.isfinite(reward):
            self.window = []
            return None
        self.rewards.append(reward)
        if self.baseline is None:
            self.baseline = reward
        adv = reward - self.baseline
        self.baseline = _DECAY * self.baseline + (1 - _DECAY) * reward
        self.scale = _DECAY * self.scale + (1 - _DECAY) * adv * adv
        norm = adv / math.sqrt(self.scale) if self.scale > 0 else 0.0
        window, self.window = self.window, []
        return window, max(-_ADV_CLIP, min(_ADV_CLIP, norm))
