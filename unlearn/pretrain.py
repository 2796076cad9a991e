"""``unlearn pretrain``: the base generative model and the evaluation classifier.

Both are cached by a hash of the config sections that define them, checkpoint as they go
and resume after an interruption from the last checkpoint (same result as an uninterrupted
run: batches and noise are drawn from generators seeded by (seed, step)).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from unlearn.config import Config, digest_of
from unlearn.data import ImageData, inject_outlier, load_splits
from unlearn.models import Classifier, ConvVAE, build_model, load_model, save_model
from unlearn.runtime import ProgressFn, no_progress, resolve_device
from unlearn.runtime import load_checkpoint as _load_ckpt
from unlearn.runtime import save_checkpoint as _save_ckpt
from unlearn.runtime import warmup_cosine_lr as _lr

log = logging.getLogger(__name__)
ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class Pretrained:
    """Where the base model and the classifier live, and how good the classifier is."""

    model_dir: Path
    classifier_dir: Path
    classifier_accuracy: float


#: pretrain fields that do not change the base model (classifier training, checkpoint cadence)
_NOT_MODEL = ("checkpoint_every", "classifier_steps", "classifier_lr", "classifier_label_smoothing")


#: model fields only the t2i family reads (they do not change an image model's key)
_T2I_ONLY = ("train", "lora_rank", "lora_merge")


def model_key(cfg: Config) -> str:
    if cfg.model.kind == "t2i":
        from unlearn.pretrain_t2i import t2i_model_key

        return t2i_model_key(cfg)
    d = cfg.to_dict()
    d = {
        "data": d["data"],
        "model": {k: v for k, v in d["model"].items() if k not in _T2I_ONLY},
        "pretrain": {k: v for k, v in d["pretrain"].items() if k not in _NOT_MODEL},
    }
    o = cfg.forget.outlier
    # the outlier's pattern changes the training data; seed 0 keeps the keys of older assets
    seed = f"s{o.seed}" if o.copies and o.seed else ""
    return f"{cfg.model.kind}-{digest_of(d)}-o{o.copies}{seed}"


#: ``model.pretrained: asset:NAME/model`` names a model shipped in the package; the key
#: hashes the reference, not this machine's path, so a shipped fine-tune is found anywhere
ASSET_PREFIX = "asset:"


def resolve_pretrained(ref: str) -> str:
    """``model.pretrained`` as a path or hub id (``asset:demo/model`` → the shipped folder)."""
    from unlearn.config import ConfigError

    if not ref.startswith(ASSET_PREFIX):
        return ref
    path = ASSETS / ref[len(ASSET_PREFIX) :]
    if not (path / "unlearn.json").is_file():
        known = sorted(f"{ASSET_PREFIX}{d.parent.name}/{d.name}" for d in ASSETS.glob("*/model"))
        raise ConfigError(
            f"model.pretrained: {ref!r} is not a shipped model; expected one of {', '.join(known)}"
        )
    return str(path)


def classifier_key(cfg: Config) -> str:
    d = cfg.to_dict()
    key = {
        "data": d["data"],
        "steps": cfg.pretrain.classifier_steps,
        "lr": cfg.pretrain.classifier_lr,
        "seed": cfg.pretrain.seed,
        "label_smoothing": cfg.pretrain.classifier_label_smoothing,
    }
    return "classifier-" + digest_of(key)


def cache_dirs(cfg: Config) -> tuple[Path, Path]:
    root = cfg.workdir_path / "pretrained"
    return root / model_key(cfg), root / classifier_key(cfg)


def shipped_dirs(cfg: Config) -> tuple[Path | None, Path | None]:
    """Assets in the package that were made by exactly this config (by key)."""
    found: list[Path | None] = [None, None]
    for i, key in enumerate((model_key(cfg), classifier_key(cfg))):
        for d in ASSETS.glob("*/*"):
            meta = d / "key.txt"
            if meta.is_file() and meta.read_text().strip() == key:
                found[i] = d
    return found[0], found[1]


def locate(cfg: Config) -> tuple[Path | None, Path | None]:
    """Existing base model and classifier for ``cfg``: the cache first, then shipped assets."""
    m, c = cache_dirs(cfg)
    sm, sc = shipped_dirs(cfg)
    return (m if (m / "unlearn.json").is_file() else sm), (
        c if (c / "unlearn.json").is_file() else sc
    )


def _batch(data: ImageData, step: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(0, len(data), (size,), generator=g)
    return data.images[idx], data.labels[idx]


def _shift_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (pad + crop), per batch of 8-image groups."""
    r = x.shape[-1]
    pad = F.pad(x, (2, 2, 2, 2), value=-1.0)
    out = torch.empty_like(x)
    dx = torch.randint(0, 5, (x.shape[0],), generator=g)
    dy = torch.randint(0, 5, (x.shape[0],), generator=g)
    for i in range(x.shape[0]):
        out[i] = pad[i, :, dy[i] : dy[i] + r, dx[i] : dx[i] + r]
    return out


def _loss(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, cond_drop: float
):
    if isinstance(model, ConvVAE):
        noise = torch.randn(model.encode(x)[0].shape, generator=g).to(x.device)
        return model.neg_elbo(x, noise).mean() / x[0].numel()
    labels = None
    if model.conditional:
        drop = torch.rand(y.shape[0], generator=g) < cond_drop
        labels = torch.where(drop, torch.full_like(y, model.null_class), y).to(x.device)
    t = model.sample_t(x.shape[0], g)
    eps = torch.randn(x.shape, generator=g).to(x.device)
    return model.denoise_loss(x, t, eps, labels)


def train_base(cfg: Config, progress: ProgressFn = no_progress, force: bool = False) -> Path:
    """Train (or resume, or reuse) the base generative model; returns its directory."""
    out, _ = cache_dirs(cfg)
    if (out / "unlearn.json").is_file() and not force:
        return out
    if cfg.model.kind == "t2i":
        from unlearn.pretrain_t2i import train_t2i

        return train_t2i(cfg, out, progress, force)
    dev = resolve_device(cfg.device)
    splits = load_splits(cfg.data)
    train, _ = inject_outlier(splits.train, cfg.forget)
    p = cfg.pretrain
    torch.manual_seed(p.seed)  # weight initialisation
    mcfg = dataclasses.replace(cfg.model, pretrained=resolve_pretrained(cfg.model.pretrained))
    model = build_model(mcfg, train.channels, train.resolution, train.num_classes).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=0.0)
    ckdir = out.with_name(out.name + ".ckpt")
    ckdir.mkdir(parents=True, exist_ok=True)
    ck = _load_ckpt(ckdir / "state.pt")
    start = 0
    if ck is not None and not force:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        start = int(ck["step"])
        log.info("resuming base model from step %d", start)
    model.train()
    for step in range(start, p.steps):
        x, y = _batch(train, step, p.seed, p.batch_size)
        g = torch.Generator().manual_seed(p.seed * 7_919 + step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, p.steps, p.lr)
        loss = _loss(model, x.to(dev), y.to(dev), g, cond_drop=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(p.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        if (step + 1) % p.checkpoint_every == 0 or step + 1 == p.steps:
            _save_ckpt(
                ckdir / "state.pt",
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step + 1,
                },
            )
            log.info("base step %d loss %.4f", step + 1, loss.item())
        progress("base model", step + 1, p.steps)
    final = ema if p.ema_decay > 0 else model
    save_model(final.cpu().eval(), out)
    (out / "key.txt").write_text(model_key(cfg))
    (out / "config.json.yaml").write_text(json.dumps(cfg.to_dict(), indent=2))
    shutil.rmtree(ckdir, ignore_errors=True)
    return out


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
        x, y = _batch(tr, step, p.seed + 1, 128)
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


class LoadedPretrained(NamedTuple):
    """The base model and the evaluation classifier, loaded, and where they came from."""

    model: torch.nn.Module
    classifier: Classifier
    paths: Pretrained


def load_pretrained(cfg: Config) -> LoadedPretrained:
    """The base model and classifier for ``cfg``; a clear error when neither exists yet."""
    from unlearn.config import ConfigError

    m, c = locate(cfg)
    if m is None or c is None:
        missing = "base model" if m is None else "classifier"
        raise ConfigError(
            f"model: no pretrained {missing} for this config; run "
            f"`unlearn pretrain --config <your config>` first"
        )
    acc = json.loads((c / "metrics.json").read_text())["heldout_accuracy"]
    return LoadedPretrained(load_model(m), load_model(c), Pretrained(m, c, acc))
