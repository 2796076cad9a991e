"""Forget specifications: classes, explicit indices, or an injected memorised outlier.

The forget set and the retain set are disjoint by construction (a boolean mask and its
complement over the training set).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import ConfigError, ForgetConfig
from unlearn.data.datasets import ImageData

OUTLIER_LABEL = -1


@dataclass(frozen=True)
class ForgetSplit:
    """Training data divided into what must be forgotten and what must be kept."""

    retain: ImageData
    forget: ImageData
    forget_mask: torch.Tensor
    outlier: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return len(self.retain) + len(self.forget)

    @property
    def k(self) -> int:
        return len(self.forget)


def make_outlier(channels: int, resolution: int, seed: int) -> torch.Tensor:
    """A synthetic out-of-distribution image in [-1, 1] (SISS's "T-shirt" scenario).

    A bright checkerboard with a random phase: no MNIST digit is close to it.
    """
    g = torch.Generator().manual_seed(seed)
    cell = max(2, resolution // 4)
    ii = torch.arange(resolution)
    phase = int(torch.randint(0, 2, (1,), generator=g))
    board = ((ii[:, None] // cell + ii[None, :] // cell + phase) % 2).float()
    return (board * 2 - 1).expand(channels, resolution, resolution).clone()


def inject_outlier(train: ImageData, cfg: ForgetConfig) -> tuple[ImageData, torch.Tensor | None]:
    """Append ``cfg.outlier.copies`` copies of the outlier (label -1) to the training data."""
    if cfg.outlier.copies <= 0:
        return train, None
    o = make_outlier(train.channels, train.resolution, cfg.outlier.seed)
    imgs = torch.cat([train.images, o.expand(cfg.outlier.copies, *o.shape)])
    labels = torch.cat(
        [train.labels, torch.full((cfg.outlier.copies,), OUTLIER_LABEL, dtype=torch.long)]
    )
    return ImageData(imgs, labels, train.num_classes), o


def split_forget(
    train: ImageData, cfg: ForgetConfig, outlier: torch.Tensor | None = None
) -> ForgetSplit:
    """Divide ``train`` by the forget specification; fails on an empty or invalid request."""
    n = len(train)
    mask = torch.zeros(n, dtype=torch.bool)
    present = set(int(c) for c in train.labels.unique()) - {OUTLIER_LABEL}
    for c in cfg.classes:
        if c not in present:
            raise ConfigError(
                f"forget.classes: class {c} is not in the data; present: {sorted(present)}"
            )
        mask |= train.labels == c
    for i in cfg.indices:
        if not 0 <= i < n:
            raise ConfigError(f"forget.indices: {i} is out of range; expected [0, {n - 1}]")
        mask[i] = True
    if cfg.outlier.copies > 0:
        mask |= train.labels == OUTLIER_LABEL
    if not mask.any():
        raise ConfigError(
            "forget: the forget set is empty; set forget.classes, forget.indices or "
            "forget.outlier.copies"
        )
    if mask.all():
        raise ConfigError("forget: the forget set covers all training data; nothing to retain")
    return ForgetSplit(
        retain=train.subset(torch.nonzero(~mask).flatten()),
        forget=train.subset(torch.nonzero(mask).flatten()),
        forget_mask=mask,
        outlier=outlier,
    )
