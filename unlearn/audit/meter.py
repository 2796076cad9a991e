"""The forget rate an attack tries to bring back: of forgotten classes, or of the outlier.

Reuses the evaluation's definitions (``metrics.generate``, ``forget_rate``, ``outlier_rate``)
on fewer samples (``audit.num_samples``), with the evaluation's fixed sampling seed, so one
model always measures the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import Config
from unlearn.metrics import forget_rate, generate, outlier_rate


@dataclass(frozen=True)
class ForgetMeter:
    """Generate ``cfg.audit.num_samples`` samples and count the forgotten ones.

    Args:
        cfg: the config (eval sampler, seed; audit sample count; outlier radius).
        classifier: the evaluation classifier (class forgetting).
        classes: forgotten classes; empty when the outlier is the target.
        outlier: the memorised outlier image, or ``None``.
        num_samples: samples per measurement; 0 = ``audit.num_samples``.
    """

    cfg: Config
    classifier: torch.nn.Module | None
    classes: tuple[int, ...]
    outlier: torch.Tensor | None
    num_samples: int = 0

    @property
    def name(self) -> str:
        """The metric's name: ``forget_rate`` (classes) or ``outlier_rate``."""
        return "forget_rate" if self.classes else "outlier_rate"

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        samples = generate(model, self.cfg, self.num_samples or self.cfg.audit.num_samples)
        if self.classes:
            probs, _ = self.classifier.to(samples.device).predict(samples)
            return forget_rate(probs, self.classes), samples
        return outlier_rate(samples, self.outlier, self.cfg.forget.outlier.radius), samples
