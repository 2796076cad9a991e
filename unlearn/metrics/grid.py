"""PNG sample grids and the class-histogram plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2
) -> Path:
    """Tile images in [-1, 1] into one PNG (upscaled ``scale``x with nearest neighbour)."""
    from PIL import Image

    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    canvas = torch.zeros((c, rows * (h + 1) + 1, nrow * (w + 1) + 1), dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = x[
            i
        ]
    arr = canvas.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_histogram(
    hist: list[float],
    path: str | Path,
    title: str = "class histogram",
    forget: tuple[int, ...] = (),
) -> Path:
    """Bar plot of the predicted-class fractions; forgotten classes drawn in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    colors = ["tab:red" if i in forget else "tab:blue" for i in range(len(hist))]
    ax.bar(np.arange(len(hist)), hist, color=colors)
    ax.set_xticks(np.arange(len(hist)))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (PNG, 100 dpi, parent folders made) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
