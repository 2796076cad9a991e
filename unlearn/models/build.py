"""Build a fresh model from the config and the data's shape."""

from __future__ import annotations

import torch

from unlearn.config import ModelConfig
from unlearn.models.diffusion import DiffusionModel, build_unet, make_scheduler
from unlearn.models.vae import ConvVAE


def build_model(
    cfg: ModelConfig, channels: int, resolution: int, num_classes: int
) -> torch.nn.Module:
    """A randomly initialised model of ``cfg.kind`` (or ``cfg.pretrained`` when set)."""
    if cfg.pretrained:
        from unlearn.models.io import check_compatible, load_model

        model = load_model(cfg.pretrained)
        check_compatible(model, channels, resolution, "model.pretrained")
        return model
    if cfg.kind == "vae":
        return ConvVAE(
            channels, resolution, cfg.block_out_channels, cfg.latent_channels, num_classes
        )
    unet = build_unet(
        cfg.kind,
        channels,
        resolution,
        num_classes,
        cfg.block_out_channels,
        cfg.layers_per_block,
        cfg.attention,
        cfg.norm_num_groups,
    )
    sched = make_scheduler(cfg.kind, cfg.num_train_timesteps, cfg.beta_schedule)
    return DiffusionModel(unet, sched, cfg.kind, num_classes)
