"""``unlearn pretrain`` for model kind ``t2i``: the demo text-to-image pipeline from scratch.

Three stages, each checkpointed and resumable (batches, captions and noise come from
generators seeded by (seed, step), so a resumed run equals an uninterrupted one):

1. the ``AutoencoderKL`` on the training images (reconstruction + small KL); its
   ``scaling_factor`` is set to 1 / std of the training latents, as Stable Diffusion's;
2. the ``UNet2DConditionModel`` and the ``CLIPTextModel`` together on the latents, with
   captions from templates plus measured attributes and ``t2i.cond_drop`` empty captions;
3. the result assembled as a ``StableDiffusionPipeline`` and saved with ``save_pretrained``.

The evaluation classifier (at the pipeline's image resolution) is the project's own,
trained by :func:`unlearn.pretrain.train_classifier` on the same data config.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearn.config import Config, ConfigError, MemoriseConfig, digest_of
from unlearn.config.schema import DATA_RUN_ONLY
from unlearn.data import load_splits
from unlearn.data.captions import AttributeThresholds, captions, vocabulary
from unlearn.models.t2i import build_t2i, save_t2i
from unlearn.runtime import (
    ProgressFn,
    ema_update,
    load_checkpoint,
    no_progress,
    resolve_device,
    save_checkpoint,
)
from unlearn.runtime import warmup_cosine_lr as _lr

log = logging.getLogger(__name__)

#: fields that do not change the pipeline (unlearning / sampling / classifier settings)
_NOT_PIPELINE = {
    "data": DATA_RUN_ONLY,
    "model": ("train", "lora_rank", "lora_merge", "pretrained"),
    "t2i": ("guidance", "samples_per_prompt"),
    "pretrain": (
        "checkpoint_every",
        "classifier_steps",
        "classifier_lr",
        "classifier_label_smoothing",
    ),
}


def t2i_model_key(cfg: Config, prefix: str = "t2i") -> str:
    d = cfg.to_dict()
    key = {
        s: {k: v for k, v in d[s].items() if k not in _NOT_PIPELINE.get(s, ())}
        for s in ("data", "model", "t2i", "pretrain")
    }
    mem = key["t2i"].pop("memorise")
    if mem["copies"]:  # no memorised caption: the key of a pipeline without one
        key["t2i"]["memorise"] = {k: mem[k] for k in ("caption", "index", "copies")}
    return f"{prefix}-{digest_of(key)}"


def check_memorise(cfg: Config, n_train: int) -> None:
    """``t2i.memorise`` must name a caption that fits the tokenizer and a training image."""
    m = cfg.t2i.memorise
    if not m.copies:
        return
    words = m.caption.split()
    if not words:
        raise ConfigError(
            f"t2i.memorise.caption: empty but copies={m.copies}; name the memorised caption "
            "or set copies=0"
        )
    if len(words) + 2 > cfg.t2i.max_length:
        raise ConfigError(
            f"t2i.memorise.caption: {m.caption!r} has {len(words)} words; at most "
            f"{cfg.t2i.max_length - 2} fit t2i.max_length={cfg.t2i.max_length}"
        )
    if m.index >= n_train:
        raise ConfigError(
            f"t2i.memorise.index: {m.index} is out of range; expected 0..{n_train - 1} "
            "(a training-set index)"
        )


def memorised_image(cfg: Config) -> torch.Tensor:
    """The duplicated training image of ``t2i.memorise`` (C, R, R in [-1, 1])."""
    train = load_splits(cfg.data).train
    check_memorise(cfg, len(train))
    return train.images[cfg.t2i.memorise.index]


def caption_batch(
    labels: torch.Tensor,
    attrs: list[list[str]],
    mem: MemoriseConfig,
    batch_size: int,
    g: torch.Generator,
    cond_drop: float,
) -> tuple[torch.Tensor, list[str]]:
    """Training-image indices of one UNet batch and their captions.

    The training set is extended by ``mem.copies`` copies of image ``mem.index``, each
    captioned ``mem.caption`` (or empty, with the same ``cond_drop`` as every image); with
    no copies the draws are those of the plain training set.
    """
    n = len(labels)
    drawn = torch.randint(0, n + mem.copies, (batch_size,), generator=g)
    idx = torch.where(drawn < n, drawn, mem.index)
    texts = captions(labels[idx], [attrs[i] for i in idx.tolist()], g, cond_drop)
    texts = [
        mem.caption if d >= n and text else text
        for d, text in zip(drawn.tolist(), texts, strict=True)
    ]
    return idx, texts


def _stage(
    name: str,
    modules: dict[str, torch.nn.Module],
    loss_fn: Callable[[int, torch.Generator], torch.Tensor],
    steps: int,
    lr: float,
    ckpt: Path,
    every: int,
    seed: int,
    ema_decay: float,
    progress: ProgressFn,
) -> dict[str, torch.nn.Module]:
    """One resumable training stage; returns the EMA copies (or the modules without EMA)."""
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = {k: copy.deepcopy(m).requires_grad_(False) for k, m in modules.items()}
    start = 0
    state = load_checkpoint(ckpt)
    if state is not None:
        for k, m in modules.items():
            m.load_state_dict(state["model"][k])
            ema[k].load_state_dict(state["ema"][k])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        log.info("resuming %s from step %d", name, start)
    for m in modules.values():
        m.train()
    for step in range(start, steps):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr)
        loss = loss_fn(step, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for k, m in modules.items():
            ema_update(ema[k], m, step, ema_decay)
        if (step + 1) % every == 0 or step + 1 == steps:
            save_checkpoint(
                ckpt,
                {
                    "model": {k: m.state_dict() for k, m in modules.items()},
                    "ema": {k: m.state_dict() for k, m in ema.items()},
                    "opt": opt.state_dict(),
                    "step": step + 1,
                },
            )
            log.info("%s step %d loss %.4f", name, step + 1, loss.item())
        progress(name, step + 1, steps)
    return ema if ema_decay > 0 else modules


def train_t2i(
    cfg: Config,
    out: Path,
    progress: ProgressFn = no_progress,
    force: bool = False,
    build: Callable = build_t2i,
    key: Callable[[Config], str] = t2i_model_key,
) -> Path:
    """Train (or resume, or reuse) the demo pipeline into ``out``; returns ``out``.
    ``build`` makes the fresh pipeline (the t2i one, or another family's with the same
    interface: SDXL's) and ``key`` its cache key."""
    if (out / "unlearn.json").is_file() and not force:
        return out
    dev = resolve_device(cfg.device)
    train = load_splits(cfg.data).train
    p, t = cfg.pretrain, cfg.t2i
    check_memorise(cfg, len(train))
    mem = t.memorise
    words = vocabulary(mem.caption if mem.copies else "")
    torch.manual_seed(p.seed)  # weight initialisation
    model = build(cfg, words, train.channels, train.resolution).to(dev)
    ckdir = out.with_name(out.name + ".ckpt")
    if force:
        shutil.rmtree(ckdir, ignore_errors=True)
    ckdir.mkdir(parents=True, exist_ok=True)
    images = train.images

    # 1. the autoencoder
    def vae_loss(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(train), (p.batch_size,), generator=g)
        x = images[idx].to(dev)
        post = model.vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(dev)
        rec = model.vae.decode(z).sample
        kl = post.kl().mean() / post.mean[0].numel()
        return F.mse_loss(rec, x) + t.kl_weight * kl

    model.vae.requires_grad_(True)
    vae = _stage(
        "vae",
        {"vae": model.vae},
        vae_loss,
        t.vae_steps,
        t.vae_lr,
        ckdir / "vae.pt",
        p.checkpoint_every,
        p.seed,
        0.0,
        progress,
    )["vae"]
    model.vae = vae.requires_grad_(False).eval()
    with torch.no_grad():
        post = [
            model.vae.encode(images[i : i + 500].to(dev)).latent_dist
            for i in range(0, len(train), 500)
        ]
        mean = torch.cat([q.mean for q in post])
        std = torch.cat([q.std for q in post])
    model.vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
    s = model.scaling_factor

    # 2. UNet and text encoder on scaled latents with templated captions
    attrs = AttributeThresholds.fit(images).attributes(images)
    encoders = model.text_encoders()
    for enc in encoders.values():
        enc.requires_grad_(True)

    def unet_loss(step: int, g: torch.Generator) -> torch.Tensor:
        idx, texts = caption_batch(train.labels, attrs, mem, p.batch_size, g, t.cond_drop)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g).to(dev)) * s
        tt = model.sample_t(len(idx), g)
        eps = torch.randn(z0.shape, generator=g).to(dev)
        pred = model.denoise(model.add_noise(z0, tt, eps), tt, model.encode_cond(texts))
        return F.mse_loss(pred, eps)

    trained = _stage(
        "unet",
        {"unet": model.unet, **encoders},
        unet_loss,
        p.steps,
        p.lr,
        ckdir / "unet.pt",
        p.checkpoint_every,
        p.seed + 1,
        p.ema_decay,
        progress,
    )
    model.unet = trained["unet"].eval()
    for name in encoders:
        setattr(model, name, trained[name].requires_grad_(False).eval())

    # 3. the pipeline
    save_t2i(model.cpu(), out)
    (out / "key.txt").write_text(key(cfg))
    (out / "config.json.yaml").write_text(json.dumps(cfg.to_dict(), indent=2))
    shutil.rmtree(ckdir, ignore_errors=True)
    return out
