"""A fresh text-to-image pipeline from the config: word-level tokenizer, small
``CLIPTextModel``, ``AutoencoderKL``, ``UNet2DConditionModel`` with cross-attention, DDIM."""

from __future__ import annotations

from collections.abc import Sequence

from unlearn.config import Config
from unlearn.models.t2i.model import T2IModel
from unlearn.models.t2i.tokenizer import build_tokenizer

#: Stable Diffusion's scaled-linear betas
BETA_START, BETA_END = 0.00085, 0.012


def make_t2i_scheduler(num_train_timesteps: int, beta_schedule: str):
    """The pipeline's DDIM scheduler; "trailing" spacing starts sampling at t = T - 1."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=BETA_START,
        beta_end=BETA_END,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
        prediction_type="epsilon",
    )


def build_vae(cfg: Config, channels: int, resolution: int):
    from diffusers import AutoencoderKL

    n = len(cfg.t2i.vae_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.t2i.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.model.latent_channels,
        norm_num_groups=cfg.model.norm_num_groups,
        sample_size=resolution,
    )


def build_text_encoder(cfg: Config, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    t = cfg.t2i
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=t.text_dim,
            intermediate_size=2 * t.text_dim,
            projection_dim=t.text_dim,
            num_hidden_layers=t.text_layers,
            num_attention_heads=t.text_heads,
            max_position_embeddings=t.max_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def build_cond_unet(cfg: Config, latent_resolution: int):
    from diffusers import UNet2DConditionModel

    m, n = cfg.model, len(cfg.model.block_out_channels)
    return UNet2DConditionModel(
        sample_size=latent_resolution,
        in_channels=m.latent_channels,
        out_channels=m.latent_channels,
        block_out_channels=tuple(m.block_out_channels),
        layers_per_block=m.layers_per_block,
        # cross-attention at every level but the lowest (and in the mid block)
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=cfg.t2i.text_dim,
        attention_head_dim=cfg.t2i.attention_head_dim,
        norm_num_groups=m.norm_num_groups,
    )


def build_t2i(cfg: Config, words: Sequence[str], channels: int, resolution: int) -> T2IModel:
    """A randomly initialised pipeline for ``channels`` x ``resolution`` images whose
    tokenizer knows ``words``."""
    tokenizer = build_tokenizer(words, cfg.t2i.max_length)
    down = 2 ** (len(cfg.t2i.vae_channels) - 1)
    return T2IModel(
        unet=build_cond_unet(cfg, resolution // down),
        vae=build_vae(cfg, channels, resolution),
        text_encoder=build_text_encoder(cfg, tokenizer),
        tokenizer=tokenizer,
        scheduler=make_t2i_scheduler(cfg.model.num_train_timesteps, cfg.model.beta_schedule),
    )
