"""One evaluation, used everywhere: samples → forget rate, FID, coverage, proxies, NLL.

All randomness comes from generators seeded by ``EvalConfig.seed``: evaluating the same
model twice gives identical numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from unlearn.config import Config
from unlearn.data import ForgetSplit, ImageData, Splits
from unlearn.metrics.classes import (
    confident_fraction,
    coverage_kl,
    forget_rate,
    per_class_rate,
    pul,
)
from unlearn.metrics.fid import frechet_distance
from unlearn.metrics.likelihood import nelbo_bpd
from unlearn.metrics.outlier import outlier_rate as rate_near
from unlearn.metrics.proxies import ProxyBatch, proxy_losses
from unlearn.metrics.result import ModelEvaluation
from unlearn.models import Classifier, is_prompted

METRIC_KEYS = (
    "forget_rate",
    "fid",
    "coverage_kl",
    "confident",
    "proxy_retain",
    "proxy_forget",
    "nelbo_bpd",
    "pul",
    "outlier_rate",
)

#: the columns of a results table of an image model (its first seven metrics)
TABLE_KEYS = METRIC_KEYS[:7]


@dataclass(frozen=True)
class EvalResult:
    """The metrics of docs/methods.md ("Metrics") for one model; ``None`` where a metric does
    not apply."""

    num_samples: int
    forget_classes: tuple[int, ...]
    forget_rate: float
    class_hist: list[float]
    fid: float
    coverage_kl: float
    confident: float
    proxy_retain: float
    proxy_forget: float
    nelbo_bpd: float
    pul: float | None = None
    outlier_rate: float | None = None

    @property
    def primary_name(self) -> str:
        """``outlier_rate`` for a memorised outlier alone (the forget rate is then that
        rate), else ``forget_rate``."""
        alone = self.outlier_rate is not None and not self.forget_classes
        return "outlier_rate" if alone else "forget_rate"

    @property
    def primary_rate(self) -> float:
        return getattr(self, self.primary_name)

    #: the attributes a results table shows, in order (a class attribute: drivers read it
    #: from the family's result type before any evaluation)
    table_keys: ClassVar[tuple[str, ...]] = TABLE_KEYS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat, namespaced numbers for MLflow."""
        out = {
            f"{prefix}{k}": float(getattr(self, k))
            for k in METRIC_KEYS
            if getattr(self, k) is not None
        }
        for c, v in enumerate(self.class_hist):
            out[f"{prefix}class_{c}"] = float(v)
        return out


@dataclass(frozen=True)
class EvalData:
    """Fixed reference data of an evaluation: held-out retain images and proxy batches."""

    reference: ImageData
    proxy_retain: ProxyBatch
    proxy_forget: ProxyBatch
    forget_classes: tuple[int, ...]
    retained_classes: list[int]
    outlier: torch.Tensor | None


def prepare(
    model: torch.nn.Module, cfg: Config, splits: Splits, split: ForgetSplit | None
) -> EvalData:
    """Build the fixed reference data once (reused by every evaluation of a run)."""
    held = splits.heldout
    classes = tuple(cfg.forget.classes)
    in_forget = torch.isin(held.labels, torch.tensor(classes, dtype=torch.long))
    reference = held.subset(torch.nonzero(~in_forget).flatten())
    if in_forget.any():
        forget_src = held.subset(torch.nonzero(in_forget).flatten())
    elif split is not None:
        forget_src = split.forget
    else:
        forget_src = held
    s, n = cfg.eval.seed, cfg.eval.proxy_batch
    retained = [c for c in range(held.num_classes) if c not in classes]
    return EvalData(
        reference=reference,
        proxy_retain=ProxyBatch.make(model, reference, n, s + 1),
        proxy_forget=ProxyBatch.make(model, forget_src, n, s + 2),
        forget_classes=classes,
        retained_classes=retained,
        outlier=None if split is None else split.outlier,
    )


@torch.no_grad()
def generate(model: torch.nn.Module, cfg: Config, n: int | None = None) -> torch.Tensor:
    """The evaluation samples (class-conditional models: labels cycle over all classes)."""
    n = n or cfg.eval.num_samples
    g = torch.Generator().manual_seed(cfg.eval.seed)
    labels = None
    if getattr(model, "conditional", False):
        labels = torch.arange(n) % model.num_classes
    was = model.training
    model.eval()
    out = model.sample(
        n, steps=cfg.eval.sampler_steps, generator=g, labels=labels, batch_size=cfg.eval.batch_size
    )
    model.train(was)
    return out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    classifier: Classifier,
    cfg: Config,
    data: EvalData,
    base_forget_rate: float | None = None,
    samples: torch.Tensor | None = None,
) -> tuple[ModelEvaluation, torch.Tensor]:
    """Sample, classify and score; returns the result and the samples (for grids). A
    pipeline's result is its family's (:class:`~unlearn.metrics.t2i.T2IEvalResult`); every
    result satisfies :class:`~unlearn.metrics.result.ModelEvaluation`."""
    if is_prompted(model):
        from unlearn.metrics.t2i import evaluate_t2i

        return evaluate_t2i(model, classifier, cfg, data)
    from unlearn.metrics.i2i import I2IEvalData, evaluate_i2i

    if isinstance(data, I2IEvalData):  # completions of masked images, not samples
        return evaluate_i2i(model, classifier, cfg, data)
    if samples is None:
        samples = generate(model, cfg)
    probs, feats = classifier.predict(samples)
    _, ref_feats = classifier.predict(data.reference.images)
    hist = per_class_rate(probs, classifier.num_classes)
    rate = forget_rate(probs, data.forget_classes)
    outlier_rate = None
    if data.outlier is not None:
        outlier_rate = rate_near(samples, data.outlier, cfg.forget.outlier.radius)
        if not data.forget_classes:
            rate = outlier_rate
    dev = next(model.parameters()).device
    proxies = proxy_losses(model, data.proxy_retain, data.proxy_forget)
    nll_x = data.proxy_retain.images[: min(64, len(data.proxy_retain.images))].to(dev)
    result = EvalResult(
        num_samples=int(samples.shape[0]),
        forget_classes=data.forget_classes,
        forget_rate=rate,
        class_hist=hist,
        fid=frechet_distance(feats, ref_feats),
        coverage_kl=coverage_kl(hist, data.retained_classes),
        confident=confident_fraction(probs, cfg.eval.confidence),
        proxy_retain=proxies[0],
        proxy_forget=proxies[1],
        nelbo_bpd=nelbo_bpd(model, nll_x, cfg.eval.elbo_timesteps, cfg.eval.seed),
        pul=None if base_forget_rate is None else pul(base_forget_rate, rate),
        outlier_rate=outlier_rate,
    )
    return result, samples
