"""Class-based metrics: forget rate, PUL, class histogram and retain-class coverage."""

from __future__ import annotations

import math

import torch


def forget_rate(probs: torch.Tensor, classes: tuple[int, ...] | list[int]) -> float:
    """Fraction of samples the classifier assigns (argmax) to any of ``classes``."""
    if not len(classes):
        return 0.0
    pred = probs.argmax(1)
    return float(torch.isin(pred, torch.tensor(list(classes))).float().mean())


def per_class_rate(probs: torch.Tensor, num_classes: int) -> list[float]:
    """The class histogram of predictions, as fractions."""
    counts = torch.bincount(probs.argmax(1), minlength=num_classes).float()
    return (counts / max(1, probs.shape[0])).tolist()


def pul(base_rate: float, rate: float) -> float:
    """Percentage of unlearning: relative drop of the forget count versus the base model."""
    if base_rate <= 0:
        return float("nan")
    return (base_rate - rate) / base_rate


def coverage_kl(hist: list[float], retained: list[int]) -> float:
    """KL(histogram restricted to retained classes || uniform over them); 0 = perfect balance."""
    p = torch.tensor([hist[c] for c in retained], dtype=torch.float64)
    if p.sum() <= 0:
        return float("inf")
    p = p / p.sum()
    q = 1.0 / len(retained)
    return float(sum(pi * math.log(pi / q) for pi in p.tolist() if pi > 0))


def confident_fraction(probs: torch.Tensor, threshold: float) -> float:
    """Fraction of samples whose top class probability is at least ``threshold``."""
    return float((probs.max(1).values >= threshold).float().mean())
