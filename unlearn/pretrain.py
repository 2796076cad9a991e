"""``unlearn pretrain``: the base generative model and the evaluation classifier.

Both are cached by a hash of the config sections that define them (the base model's key and
training come from the config's family, :mod:`unlearn.families`), checkpoint as they go and
resume after an interruption from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearn.config import Config
from unlearn.data import ImageData, load_splits
from unlearn.families import family_of
from unlearn.families import store as _store
from unlearn.families.image.pretrain import _shift_augment, batch_at
from unlearn.families.store import (
    ASSET_PREFIX,
    ASSETS,
    LoadedPretrained,
    Pretrained,
    classifier_key,
    resolve_pretrained,
)
from unlearn.models import Classifier, save_model
from unlearn.runtime import ProgressFn, no_progress, resolve_device
from unlearn.runtime import warmup_cosine_lr as _lr

__all__ = [
    "ASSETS",
    "ASSET_PREFIX",
    "LoadedPretrained",
    "Pretrained",
    "cache_dirs",
    "classifier_key",
    "load_pretrained",
    "locate",
    "model_key",
    "pretrain",
    "resolve_pretrained",
    "shipped_dirs",
    "train_base",
    "train_classifier",
]

log = logging.getLogger(__name__)


def model_key(cfg: Config) -> str:
    """The cache key of ``cfg``'s base model (its family decides what goes in it)."""
    return family_of(cfg).model_key(cfg)


def cache_dirs(cfg: Config) -> tuple[Path, Path]:
    return _store.cache_dirs(cfg, model_key(cfg))


def shipped_dirs(cfg: Config) -> tuple[Path | None, Path | None]:
    """Assets in the package that were made by exactly this config (by key)."""
    return _store.shipped_dirs(cfg, model_key(cfg))


def locate(cfg: Config) -> tuple[Path | None, Path | None]:
    """Existing base model and classifier for ``cfg``: the cache first, then shipped assets."""
    return _store.locate(cfg, model_key(cfg))


def train_base(cfg: Config, progress: ProgressFn = no_progress, force: bool = False) -> Path:
    """Train (or resume, or reuse) the base generative model; returns its directory."""
    out, _ = cache_dirs(cfg)
    if (out / "unlearn.json").is_file() and not force:
        return out
    return family_of(cfg).train_base(cfg, out, progress, force)


@torch.no_grad()
def accuracy(clf: Classifier, data: ImageData) -> float:
    probs, _ = clf.predict(data.images)
    return float((probs.argmax(1) == data.labels).float().mean())


def train_classifier(cfg: Config, progress: ProgressFn = no_progress, force: bool = False) -> Path:
    """Train (or reuse) the evaluation classifier on the training split."""
    _, out = cache_dirs(cfg)
    if (out / "unlearn.json").is_file() and not force:
        return out
    dev = resolve_device(cfg.device)
    splits = load_splits(cfg.data)
    p = cfg.pretrain
    torch.manual_seed(p.seed)
    tr = splits.train
    clf = Classifier(tr.channels, tr.resolution, tr.num_classes).to(dev)
    opt = torch.optim.AdamW(clf.parameters(), lr=p.classifier_lr, weight_decay=5e-4)
    clf.train()
    for step in range(p.classifier_steps):
        x, y = batch_at(tr, step, p.seed + 1, 128)
        g = torch.Generator().manual_seed(p.seed * 31 + step)
        x = _shift_augment(x, g)
        for group in opt.param_groups:
            group["lr"] = _lr(step, p.classifier_steps, p.classifier_lr, warmup=100)
        loss = F.cross_entropy(
            clf(x.to(dev)), y.to(dev), label_smoothing=p.classifier_label_smoothing
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress("classifier", step + 1, p.classifier_steps)
    clf = clf.cpu().eval()
    acc = accuracy(clf, splits.heldout)
    save_model(clf, out)
    (out / "key.txt").write_text(classifier_key(cfg))
    (out / "metrics.json").write_text(json.dumps({"heldout_accuracy": acc}, indent=2))
    log.info("classifier held-out accuracy %.4f", acc)
    return out


def pretrain(cfg: Config, progress: ProgressFn = no_progress, force: bool = False) -> Pretrained:
    """Both models; reuses the cache or shipped assets made by the same config."""
    m, c = (None, None) if force else locate(cfg)
    m = m or train_base(cfg, progress, force)
    c = c or train_classifier(cfg, progress, force)
    acc = json.loads((c / "metrics.json").read_text())["heldout_accuracy"]
    return Pretrained(m, c, acc)


def load_pretrained(cfg: Config) -> LoadedPretrained:
    """The base model and classifier for ``cfg``; a clear error when neither exists yet."""
    return _store.load_pretrained(cfg, model_key(cfg))
