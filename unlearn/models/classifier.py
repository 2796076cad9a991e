"""The evaluation classifier: a small CNN whose penultimate layer gives FID features."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Conv-BN-ReLU x4 with two poolings, then a 128-d feature layer and the class logits.

    Args:
        channels: image channels.
        resolution: image side (any size >= 8; a global pooling follows the convs).
        num_classes: number of labels.
        width: channels of the first conv stage (doubled in the second).
    """

    def __init__(self, channels: int, resolution: int, num_classes: int, width: int = 32):
        super().__init__()
        self.config = dict(
            channels=channels, resolution=resolution, num_classes=num_classes, width=width
        )
        w = width

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(channels, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * w, 128),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(128, num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, features) in eval mode, batched."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        probs, feats = [], []
        for i in range(0, x.shape[0], batch_size):
            f = self.features(x[i : i + batch_size].to(dev))
            probs.append(self.head(f).softmax(-1).cpu())
            feats.append(f.cpu())
        self.train(was)
        return torch.cat(probs), torch.cat(feats)
