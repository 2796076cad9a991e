"""Memorised-outlier metrics: RMS pixel distance of samples to the outlier, and the rate.

A sample "reproduces" the outlier when its RMS distance is at most ``forget.outlier.radius``
(docs/methods.md, "Metrics": the forget rate of memorised samples). Used by the evaluation,
the audit and the memorisation figures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unlearn.metrics.grid import save_figure


def outlier_distances(samples: torch.Tensor, outlier: torch.Tensor) -> torch.Tensor:
    """Per-sample RMS pixel distance (images in [-1, 1]) to the outlier image."""
    return (samples.float() - outlier.float().to(samples.device)).pow(2).flatten(1).mean(1).sqrt()


def outlier_rate(samples: torch.Tensor, outlier: torch.Tensor, radius: float) -> float:
    """Fraction of samples within ``radius`` of the outlier."""
    return float((outlier_distances(samples, outlier) <= radius).float().mean())


def save_distance_histogram(
    distances: torch.Tensor, radius: float, path: str | Path, title: str = ""
) -> Path:
    """Histogram of the samples' RMS distance to the outlier, the radius marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = distances.detach().cpu().numpy()
    rate = float((d <= radius).mean())
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(d, bins=60, range=(0.0, max(2.0, float(d.max()))), color="tab:blue")
    ax.axvline(radius, color="tab:red", linestyle="--", label=f"radius {radius:g}: {rate:.1%}")
    ax.set_yscale("log")
    ax.set_xlabel("RMS pixel distance to the outlier")
    ax.set_ylabel("samples")
    ax.set_title(title or f"{len(d)} samples")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
