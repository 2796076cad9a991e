"""Fréchet distance between two feature sets (FID on the evaluation classifier's features)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """||μa-μb||² + Tr(Σa + Σb - 2(ΣaΣb)^½), in float64; 0 for identical sets."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Dead ReLU features make the covariances singular; a tiny ridge keeps sqrtm stable
    # (the same remedy as pytorch-fid) and changes the distance by far less than its noise.
    off = np.eye(ca.shape[0]) * 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm((ca + off) @ (cb + off))
    covmean = covmean.real
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.trace(covmean))
    return max(fd, 0.0)
