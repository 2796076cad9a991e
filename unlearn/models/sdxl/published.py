"""SDXL base 1.0's parts built from their published configurations, with random weights
(nothing downloaded): the ``UNet2DConditionModel`` (three down / up blocks, transformer depths
1 / 2 / 10, cross-attention dim 2048, ``text_time`` added conditioning of 6 × 256 time-id
features and the 1280-wide pooled embedding), the ``AutoencoderKL`` (scaling factor
0.13025, 8x downsampling), the CLIP ViT-L/14 text encoder and the OpenCLIP ViT-bigG/14 text
encoder with projection, with the pipeline's Euler scheduler config.

``width`` < 1 shrinks the channel widths (and the text encoders' depth and vocabulary) while
keeping every block type, the transformer depths, the attention layout, the cross-attention
and pooled widths, the module names LoRA targets and the VAE's scaling factor: SDXL's
structure at a size a test can run. For cost measurements (``benchmarks/bench_sd_scale.py``).
"""

from __future__ import annotations

import torch

#: ``unet/config.json`` of stable-diffusion-xl-base-1.0
UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    # diffusers' name for the number of heads in this config (heads of width 64)
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}

#: ``vae/config.json``
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

#: ``text_encoder/config.json`` (CLIP ViT-L/14's text tower)
TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

#: ``text_encoder_2/config.json`` (OpenCLIP ViT-bigG/14's text tower, with projection)
TEXT_2 = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 1280,
}

#: ``scheduler/scheduler_config.json``
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "use_karras_sigmas": False,
}


def _widths(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel widths scaled by ``width``, kept multiples of 32 (the group norms' groups)."""
    return tuple(max(32, int(round(c * width / 32)) * 32) for c in channels)


def sdxl_base_model(
    width: float = 1.0, words: tuple[str, ...] = (), seed: int = 0, sample_size: int = 128
):
    """An :class:`~unlearn.models.sdxl.SDXLModel` of SDXL base's parts (random weights,
    float32); ``width`` < 1: reduced widths (heads of width 32), one layer per text encoder
    and a small vocabulary. Both tokenizers are word-level over ``words`` (77 tokens);
    ``sample_size``: the latents' side the sampler uses (128: 1024 px images)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from unlearn.models.sdxl.model import SDXLModel
    from unlearn.models.t2i.tokenizer import build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(words or ("a", "painting", "photo"), TEXT["max_position_embeddings"])
    unet, vae = dict(UNET) | {"sample_size": sample_size}, dict(VAE)
    text, text2 = dict(TEXT), dict(TEXT_2)
    if width < 1:
        unet["block_out_channels"] = _widths(unet["block_out_channels"], width)
        unet["attention_head_dim"] = tuple(c // 32 for c in unet["block_out_channels"])
        vae["block_out_channels"] = _widths(vae["block_out_channels"], width)
        small = {"num_hidden_layers": 1, "intermediate_size": 256, "vocab_size": len(tok)}
        text, text2 = text | small, text2 | small
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    ids["pad_token_id"] = tok.pad_token_id
    import copy

    return SDXLModel(
        UNet2DConditionModel(**unet),
        AutoencoderKL(**vae),
        CLIPTextModel(CLIPTextConfig(**text, **ids)),
        CLIPTextModelWithProjection(CLIPTextConfig(**text2, **ids)),
        tok,
        copy.deepcopy(tok),
        EulerDiscreteScheduler(**SCHEDULER),
    )
