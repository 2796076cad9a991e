"""Memorised-outlier metrics: RMS pixel distance of samples to the outlier, and the rate.

A sample "reproduces" the outlier when its RMS distance is at most ``forget.outlier.radius``
(DESIGN.md, forget rate for memorised samples). Used by the evaluation, the audit and the
memorisation figures.
"""

from __future__ import annotations

import torch


def outlier_distances(samples: torch.Tensor, outlier: torch.Tensor) -> torch.Tensor:
    """Per-sample RMS pixel distance (images in [-1, 1]) to the outlier image."""
    return (samples.float() - outlier.float().to(samples.device)).pow(2).flatten(1).mean(1).sqrt()


def outlier_rate(samples: torch.Tensor, outlier: torch.Tensor, radius: float) -> float:
    """Fraction of samples within ``radius`` of the outlier."""
    return float((outlier_distances(samples, outlier) <= radius).float().mean())
