"""Pretraining the image-completion models (``inpaint_ddpm``, ``mae``) on the config's data.

Every batch completes one task of ``i2i.train_tasks`` with a hidden fraction drawn from
[0.15, 0.75], so one model serves both tasks at any ``i2i.mask_ratio``. Checkpoints as it goes
and resumes from the last checkpoint (batches, masks and noise come from generators seeded by
(seed, step): an interrupted run ends with the same weights).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch

from unlearn.config import Config, digest_of
from unlearn.config.schema import DATA_RUN_ONLY
from unlearn.runtime import ProgressFn, ema_update, no_progress, resolve_device
from unlearn.runtime import load_checkpoint as _load_ckpt
from unlearn.runtime import save_checkpoint as _save_ckpt
from unlearn.runtime import warmup_cosine_lr as _lr

log = logging.getLogger(__name__)

#: the hidden fractions pretraining draws from
TRAIN_RATIOS = (0.15, 0.75)

#: i2i fields that choose what a run completes or scores, not the base model
_I2I_RUN_ONLY = ("task", "mask_ratio", "eval_images")
#: model fields the i2i kinds read
_MODEL_FIELDS = {
    "inpaint_ddpm": (
        "kind",
        "block_out_channels",
        "layers_per_block",
        "attention",
        "norm_num_groups",
        "num_train_timesteps",
        "beta_schedule",
    ),
    "mae": ("kind",),
}
#: i2i fields each kind's network reads
_I2I_FIELDS = {
    "inpaint_ddpm": ("train_tasks", "patch_size"),
    "mae": (
        "train_tasks",
        "patch_size",
        "width",
        "layers",
        "heads",
        "decoder_width",
        "decoder_layers",
    ),
}
_NOT_MODEL = ("checkpoint_every", "classifier_steps", "classifier_lr", "classifier_label_smoothing")


def i2i_model_key(cfg: Config) -> str:
    """The cache key of an image-completion model: its data, the model and i2i fields its
    kind reads, and its pretraining."""
    d = cfg.to_dict()
    kind = cfg.model.kind
    key = {
        "data": {k: v for k, v in d["data"].items() if k not in DATA_RUN_ONLY},
        "model": {k: d["model"][k] for k in _MODEL_FIELDS[kind]},
        "i2i": {k: d["i2i"][k] for k in _I2I_FIELDS[kind]},
        "pretrain": {k: v for k, v in d["pretrain"].items() if k not in _NOT_MODEL},
    }
    return f"{kind}-{digest_of(key)}"


def build_params(cfg: Config, channels: int, resolution: int, num_classes: int) -> dict:
    """The build parameters of ``cfg``'s model (what ``build.json`` stores)."""
    m, i = cfg.model, cfg.i2i
    b = {
        "kind": m.kind,
        "tasks": list(i.train_tasks),
        "patch": i.patch_size,
        "resolution": resolution,
        "channels": channels,
        "num_classes": num_classes,
    }
    if m.kind == "mae":
        b |= {
            "width": i.width,
            "layers": i.layers,
            "heads": i.heads,
            "decoder_width": i.decoder_width,
            "decoder_layers": i.decoder_layers,
        }
    else:
        b |= {
            "block_out_channels": list(m.block_out_channels),
            "layers_per_block": m.layers_per_block,
            "attention": m.attention,
            "norm_num_groups": m.norm_num_groups,
            "num_train_timesteps": m.num_train_timesteps,
            "beta_schedule": m.beta_schedule,
        }
    return b


def build_for(cfg: Config, channels: int, resolution: int, num_classes: int):
    """A fresh model for ``cfg``, with the checks that the data fits it."""
    from unlearn.config import ConfigError
    from unlearn.models.i2i import build_i2i

    p = cfg.i2i.patch_size
    if resolution % p or resolution // p < 2:
        raise ConfigError(
            f"i2i.patch_size: {p} is not allowed for {resolution}-pixel images; expected a "
            f"divisor of {resolution} at most {resolution // 2}"
        )
    if cfg.model.kind == "mae" and cfg.i2i.width % cfg.i2i.heads:
        raise ConfigError(
            f"i2i.heads: {cfg.i2i.heads} is not allowed; expected a divisor of i2i.width "
            f"({cfg.i2i.width})"
        )
    return build_i2i(build_params(cfg, channels, resolution, num_classes))


def train_i2i(
    cfg: Config, out: Path, progress: ProgressFn = no_progress, force: bool = False
) -> Path:
    """Train (or resume) the base completion model into ``out``; returns ``out``."""
    from unlearn.data import load_splits
    from unlearn.families.image.pretrain import _shift_augment, batch_at
    from unlearn.models import save_model

    dev = resolve_device(cfg.device)
    train = load_splits(cfg.data).train
    p = cfg.pretrain
    torch.manual_seed(p.seed)  # weight initialisation
    model = build_for(cfg, train.channels, train.resolution, train.num_classes).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=0.0)
    ckdir = out.with_name(out.name + ".ckpt")
    ckdir.mkdir(parents=True, exist_ok=True)
    ck = _load_ckpt(ckdir / "state.pt")
    start = 0
    if ck is not None and not force:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        start = int(ck["step"])
        log.info("resuming %s from step %d", cfg.model.kind, start)
    model.train()
    tasks = cfg.i2i.train_tasks
    lo, hi = TRAIN_RATIOS
    for step in range(start, p.steps):
        x, _ = batch_at(train, step, p.seed, p.batch_size)
        g = torch.Generator().manual_seed(p.seed * 7_919 + step)
        x = _shift_augment(x, g).to(dev)
        task = tasks[int(torch.randint(0, len(tasks), (1,), generator=g))]
        ratio = lo + (hi - lo) * float(torch.rand(1, generator=g))
        model.set_mask(task, ratio)
        t = model.sample_t(x.shape[0], g).to(dev)
        eps = torch.randn(x.shape, generator=g).to(dev)
        for group in opt.param_groups:
            group["lr"] = _lr(step, p.steps, p.lr)
        loss = model.recon_loss(x, x, t, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
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
            log.info("%s step %d loss %.4f", cfg.model.kind, step + 1, loss.item())
        progress("base model", step + 1, p.steps)
    final = ema if p.ema_decay > 0 else model
    save_model(final.cpu().eval(), out)
    (out / "key.txt").write_text(i2i_model_key(cfg))
    (out / "config.json.yaml").write_text(json.dumps(cfg.to_dict(), indent=2))
    import shutil

    shutil.rmtree(ckdir, ignore_errors=True)
    return out
