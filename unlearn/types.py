"""Small typed containers shared by methods, agents, the unlearner and the env."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Batch:
    """Images in [-1, 1] with their labels (labels are -1 for the injected outlier).

    For text-to-image models the images are VAE latents and the labels ids into the
    model's prompt table (0 = the empty prompt).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class LossTerms:
    """What a method returns for one step.

    ``retain`` and ``forget`` are the two scalar terms (both differentiable); ``total`` is
    the objective minimised with one backward when the method combines losses. Methods that
    combine gradients instead (SISS gradient form, EraseDiff) leave ``total`` as the value
    to report and the unlearner calls their ``combine_gradients``.
    """

    retain: torch.Tensor
    forget: torch.Tensor
    total: torch.Tensor
    extras: dict[str, float] | None = None
    #: the method's random draws for λ-gradient estimators when λ carries gradient (SISS:
    #: ``methods.siss.MixtureDraw``); None otherwise
    draw: Any = None


@dataclass(frozen=True)
class StepStats:
    """Everything an agent, a callback or the env may want to know about one step."""

    step: int
    budget: int
    lam: float
    retain_loss: float
    forget_loss: float
    total_loss: float
    retain_grad_norm: float = float("nan")
    forget_grad_norm: float = float("nan")
    grad_cosine: float = float("nan")
    weight_spread: float = float("nan")
    proxy_retain: float = float("nan")
    proxy_forget: float = float("nan")
    forget_rate: float | None = None
    quality: float | None = None
    extras: dict[str, float] | None = None

    @property
    def progress(self) -> float:
        return self.step / max(1, self.budget)
