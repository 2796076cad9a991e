"""A fresh SDXL-format pipeline from the config: the t2i family's tokenizer, VAE and
scheduler, two small CLIP text encoders (the second with a projection) and a
``UNet2DConditionModel`` with SDXL's ``text_time`` added conditioning.

Each text encoder is ``t2i.text_dim`` wide; the UNet's cross-attention reads both,
concatenated (``2 · text_dim``), and its added embedding reads the pooled projection
(``text_dim``) and six time ids of :data:`TIME_EMBED_DIM` each, as SDXL's does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from unlearn.config import Config
from unlearn.models.sdxl.model import SDXLModel
from unlearn.models.t2i.build import build_vae, make_t2i_scheduler
from unlearn.models.t2i.tokenizer import build_tokenizer

#: width of each of the six micro-conditioning time ids' sinusoidal embedding
TIME_EMBED_DIM = 8


def _clip_config(cfg: Config, tokenizer):
    from transformers import CLIPTextConfig

    t = cfg.t2i
    return CLIPTextConfig(
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


def build_sdxl_unet(cfg: Config, latent_resolution: int):
    from diffusers import UNet2DConditionModel

    m, n, d = cfg.model, len(cfg.model.block_out_channels), cfg.t2i.text_dim
    return UNet2DConditionModel(
        sample_size=latent_resolution,
        in_channels=m.latent_channels,
        out_channels=m.latent_channels,
        block_out_channels=tuple(m.block_out_channels),
        layers_per_block=m.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=2 * d,
        attention_head_dim=cfg.t2i.attention_head_dim,
        norm_num_groups=m.norm_num_groups,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + d,
    )


def build_sdxl(cfg: Config, words: Sequence[str], channels: int, resolution: int) -> SDXLModel:
    """A randomly initialised SDXL-format pipeline for ``channels`` x ``resolution`` images
    whose two tokenizers know ``words``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tokenizer(words, cfg.t2i.max_length)
    down = 2 ** (len(cfg.t2i.vae_channels) - 1)
    return SDXLModel(
        unet=build_sdxl_unet(cfg, resolution // down),
        vae=build_vae(cfg, channels, resolution),
        text_encoder=CLIPTextModel(_clip_config(cfg, tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(cfg, tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=copy.deepcopy(tokenizer),
        scheduler=make_t2i_scheduler(cfg.model.num_train_timesteps, cfg.model.beta_schedule),
    )
