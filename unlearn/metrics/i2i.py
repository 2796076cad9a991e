"""Scoring image completions, forget and retain images separately.

Held-out images of the forget classes and of the retain classes are masked, completed and
compared with their ground truth through the evaluation classifier:

- FID of the completions against the ground truth (classifier features), per split;
- the mean cosine similarity of each completion's classifier embedding to its ground
  truth's, per split;
- the classifier accuracy of the completions, per split (the forget accuracy is the forget
  rate: forgotten completions no longer show their digit), and per digit.

All randomness (the inpainter's sampling noise) comes from ``eval.seed``: evaluating the same
model twice gives identical numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from unlearn.config import Config
from unlearn.data import ImageData
from unlearn.metrics.fid import frechet_distance
from unlearn.metrics.proxies import ProxyBatch, proxy_losses

#: every number of a result, flattened for MLflow
I2I_METRIC_KEYS = (
    "forget_rate",
    "retain_accuracy",
    "fid",
    "forget_fid",
    "retain_cosine",
    "forget_cosine",
    "proxy_retain",
    "proxy_forget",
)
#: the columns of a results table of an image-completion model
I2I_TABLE_KEYS = ("forget_rate", "retain_accuracy", "fid", "forget_fid", "forget_cosine")
#: rows of each split in the sample grid
GRID_ROWS = 8


@dataclass(frozen=True)
class I2IEvalData:
    """Fixed evaluation data: held-out images of the forget classes (``forget``) and of the
    others (``retain``), at most ``i2i.eval_images`` each, and the fixed proxy batches."""

    forget: ImageData
    retain: ImageData
    proxy_retain: ProxyBatch
    proxy_forget: ProxyBatch
    forget_classes: tuple[int, ...]
    retained_classes: list[int]
    outlier: torch.Tensor | None = None

    @property
    def reference(self) -> ImageData:
        """Held-out retain images (what every family's FID is measured against)."""
        return self.retain


@dataclass(frozen=True)
class I2IEvalResult:
    """The completion metrics of one model.

    ``forget_rate``: classifier accuracy of the forget images' completions; ``fid`` and
    ``retain_cosine``: completions of retain images against their ground truth;
    ``per_class_accuracy``: accuracy of the completions of each digit's images (forget and
    retain together)."""

    num_samples: int
    forget_classes: tuple[int, ...]
    task: str
    mask_ratio: float
    forget_rate: float
    retain_accuracy: float
    fid: float
    forget_fid: float
    retain_cosine: float
    forget_cosine: float
    proxy_retain: float
    proxy_forget: float
    per_class_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def primary_name(self) -> str:
        return "forget_rate"

    @property
    def primary_rate(self) -> float:
        return self.forget_rate

    #: the attributes a results table shows, in order (a class attribute: drivers read it
    #: from the family's result type before any evaluation)
    table_keys: ClassVar[tuple[str, ...]] = I2I_TABLE_KEYS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        out = {f"{prefix}{k}": float(getattr(self, k)) for k in I2I_METRIC_KEYS}
        for c, v in self.per_class_accuracy.items():
            out[f"{prefix}class_{c}_accuracy"] = float(v)
        return out


def _first(data: ImageData, n: int, seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[: min(n, len(data))]
    return data.subset(idx.sort().values)


def prepare_i2i(
    model: torch.nn.Module, cfg: Config, heldout: ImageData, forget_train: ImageData | None
) -> I2IEvalData:
    """The held-out forget / retain images an evaluation completes (fixed by ``eval.seed``),
    and the proxy batches. Without held-out images of the forget classes (an index
    specification), the forget set's own images stand in."""
    classes = tuple(cfg.forget.classes)
    in_forget = torch.isin(heldout.labels, torch.tensor(classes, dtype=torch.long))
    retain = heldout.subset(torch.nonzero(~in_forget).flatten())
    if in_forget.any():
        forget = heldout.subset(torch.nonzero(in_forget).flatten())
    elif forget_train is not None and len(forget_train):
        forget = forget_train
    else:
        forget = heldout
    n, s = cfg.i2i.eval_images, cfg.eval.seed
    forget, retain = _first(forget, n, s), _first(retain, n, s + 1)
    pb = cfg.eval.proxy_batch
    return I2IEvalData(
        forget=forget,
        retain=retain,
        proxy_retain=ProxyBatch.make(model, retain, pb, s + 1),
        proxy_forget=ProxyBatch.make(model, forget, pb, s + 2),
        forget_classes=classes,
        retained_classes=[c for c in range(heldout.num_classes) if c not in classes],
    )


@torch.no_grad()
def complete(model: torch.nn.Module, cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """Completions of ``images`` under the model's active mask, in ``eval.batch_size``
    batches, seeded by ``eval.seed``."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(cfg.eval.seed)
    out = []
    for i in range(0, images.shape[0], cfg.eval.batch_size):
        x = images[i : i + cfg.eval.batch_size].to(dev)
        out.append(model.complete(x, steps=cfg.eval.sampler_steps, generator=g).cpu())
    model.train(was)
    return torch.cat(out) if out else images[:0]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


def _accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def triples(model, images: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Rows of masked input | completion | ground truth, flattened for a 3-wide grid."""
    masked = model.masked(images)
    return torch.stack([masked, done, images], dim=1).flatten(0, 1)


@torch.no_grad()
def evaluate_i2i(
    model: torch.nn.Module, classifier: torch.nn.Module, cfg: Config, data: I2IEvalData
) -> tuple[I2IEvalResult, torch.Tensor]:
    """Complete, classify and score; returns the result and the grid rows (masked input |
    completion | ground truth; the first forget images, then the first retain images)."""
    f_done = complete(model, cfg, data.forget.images)
    r_done = complete(model, cfg, data.retain.images)
    f_p, f_feat = classifier.predict(f_done)
    r_p, r_feat = classifier.predict(r_done)
    _, f_true = classifier.predict(data.forget.images)
    _, r_true = classifier.predict(data.retain.images)
    probs = torch.cat([f_p, r_p])
    labels = torch.cat([data.forget.labels, data.retain.labels])
    per_class = {
        str(c): _accuracy(probs[labels == c], labels[labels == c])
        for c in sorted(int(v) for v in labels.unique())
        if c >= 0
    }
    proxies = proxy_losses(model, data.proxy_retain, data.proxy_forget)
    result = I2IEvalResult(
        num_samples=int(f_done.shape[0] + r_done.shape[0]),
        forget_classes=tuple(data.forget_classes),
        task=str(model.task),
        mask_ratio=float(model.mask(f_done[:1]).mean()) if len(f_done) else float("nan"),
        forget_rate=_accuracy(f_p, data.forget.labels),
        retain_accuracy=_accuracy(r_p, data.retain.labels),
        fid=frechet_distance(r_feat, r_true),
        forget_fid=frechet_distance(f_feat, f_true) if len(f_done) > 1 else float("nan"),
        retain_cosine=_cosine(r_feat, r_true),
        forget_cosine=_cosine(f_feat, f_true),
        proxy_retain=proxies[0],
        proxy_forget=proxies[1],
        per_class_accuracy=per_class,
    )
    k = GRID_ROWS
    rows = torch.cat(
        [
            triples(model, data.forget.images[:k], f_done[:k]),
            triples(model, data.retain.images[:k], r_done[:k]),
        ]
    )
    return result, rows


def save_completion_grid(rows: torch.Tensor, path: str | Path) -> Path:
    """The grid of :func:`evaluate_i2i`'s rows: masked input | completion | ground truth."""
    from unlearn.metrics.grid import save_grid

    return save_grid(rows, path, nrow=3, scale=4)


@torch.no_grad()
def forget_probe(model, classifier, cfg: Config, data: I2IEvalData, n: int) -> float:
    """The forget classes' mean classifier probability on the completions of the first ``n``
    forget images (soft: a few images give a usable number; the env's ``forget_probe``)."""
    done = complete(model, cfg, data.forget.images[:n])
    probs, _ = classifier.predict(done)
    cols = torch.tensor(data.forget_classes, dtype=torch.long)
    return float(probs[:, cols].sum(dim=1).mean())


@dataclass(frozen=True)
class CompletionMeter:
    """The classifier accuracy of the forget images' completions (what an attack tries to
    bring back), on the evaluation's forget images."""

    cfg: Config
    classifier: torch.nn.Module | None
    data: I2IEvalData

    @property
    def name(self) -> str:
        return "forget_rate"

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        images = self.data.forget.images[: self.cfg.audit.num_samples]
        done = complete(model, self.cfg, images)
        probs, _ = self.classifier.predict(done)
        return _accuracy(probs, self.data.forget.labels[: len(images)]), done
