"""Pretraining the image families' base models (``ddpm``, ``cond_ddpm``, ``vpsde``, ``vae``).

Checkpoints as it goes and resumes after an interruption from the last checkpoint (same
result as an uninterrupted run: batches and noise are drawn from generators seeded by
(seed, step)).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearn.config import Config, digest_of
from unlearn.config.schema import DATA_RUN_ONLY
from unlearn.data import ImageData, inject_outlier, load_splits
from unlearn.families.store import resolve_pretrained
from unlearn.models import ConvVAE, build_model, save_model
from unlearn.runtime import ProgressFn, ema_update, no_progress, resolve_device
from unlearn.runtime import load_checkpoint as _load_ckpt
from unlearn.runtime import save_checkpoint as _save_ckpt
from unlearn.runtime import warmup_cosine_lr as _lr

log = logging.getLogger(__name__)


#: pretrain fields that do not change the base model (classifier training, checkpoint cadence)
_NOT_MODEL = ("checkpoint_every", "classifier_steps", "classifier_lr", "classifier_label_smoothing")


#: model fields only the t2i family reads (they do not change an image model's key)
_T2I_ONLY = ("train", "lora_rank", "lora_merge")


def image_model_key(cfg: Config) -> str:
    """The cache key of an image model: its data, model and pretraining sections and the
    injected outlier."""
    d = cfg.to_dict()
    d = {
        "data": {k: v for k, v in d["data"].items() if k not in DATA_RUN_ONLY},
        "model": {k: v for k, v in d["model"].items() if k not in _T2I_ONLY},
        "pretrain": {k: v for k, v in d["pretrain"].items() if k not in _NOT_MODEL},
    }
    o = cfg.forget.outlier
    # the outlier's pattern changes the training data; seed 0 keeps the keys of older assets
    seed = f"s{o.seed}" if o.copies and o.seed else ""
    return f"{cfg.model.kind}-{digest_of(d)}-o{o.copies}{seed}"


def batch_at(data: ImageData, step: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def train_image(
    cfg: Config, out: Path, progress: ProgressFn = no_progress, force: bool = False
) -> Path:
    """Train (or resume) the base generative model into ``out``; returns ``out``."""
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
        x, y = batch_at(train, step, p.seed, p.batch_size)
        g = torch.Generator().manual_seed(p.seed * 7_919 + step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, p.steps, p.lr)
        loss = _loss(model, x.to(dev), y.to(dev), g, cond_drop=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, step, p.ema_decay)
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
    (out / "key.txt").write_text(image_model_key(cfg))
    (out / "config.json.yaml").write_text(json.dumps(cfg.to_dict(), indent=2))
    shutil.rmtree(ckdir, ignore_errors=True)
    return out
