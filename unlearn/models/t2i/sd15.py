"""Stable Diffusion 1.5's parts built from their published configurations, with random
weights (nothing downloaded): the ``UNet2DConditionModel`` (four down / up blocks, the first
three with cross-attention, cross-attention dim 768), the ``AutoencoderKL`` (scaling factor
0.18215, 8x downsampling) and the CLIP ViT-L/14 text encoder (12 layers, width 768, 77
positions), with the pipeline's PNDM scheduler config.

``width`` < 1 shrinks the channel widths (and the text encoder's depth and vocabulary) while
keeping every block type, the attention layout, the cross-attention dim, the module names
LoRA targets and the VAE's scaling factor: SD-1.5's structure at a size a test can run.
For cost measurements (``benchmarks/bench_sd_scale.py``, ``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import torch

#: ``unet/config.json`` of stable-diffusion-v1-5
UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
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
    "sample_size": 512,
    "scaling_factor": 0.18215,
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

#: ``scheduler/scheduler_config.json``
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def _widths(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel widths scaled by ``width``, kept multiples of 32 (the group norms' groups)."""
    return tuple(max(32, int(round(c * width / 32)) * 32) for c in channels)


def sd15_model(
    width: float = 1.0, words: tuple[str, ...] = (), seed: int = 0, sample_size: int = 64
):
    """A :class:`~unlearn.models.t2i.T2IModel` of SD-1.5's parts (random weights, float32);
    ``width`` < 1: reduced widths, one text-encoder layer and a small vocabulary. The
    tokenizer is word-level over ``words`` (77 tokens); ``sample_size``: the latents' side
    the sampler uses (64: 512 px images)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from unlearn.models.t2i.model import T2IModel
    from unlearn.models.t2i.tokenizer import build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(words or ("a", "painting", "photo"), TEXT["max_position_embeddings"])
    unet, vae, text = dict(UNET) | {"sample_size": sample_size}, dict(VAE), dict(TEXT)
    if width < 1:
        unet["block_out_channels"] = _widths(unet["block_out_channels"], width)
        vae["block_out_channels"] = _widths(vae["block_out_channels"], width)
        text |= {"num_hidden_layers": 1, "intermediate_size": 256, "vocab_size": len(tok)}
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    ids["pad_token_id"] = tok.pad_token_id
    return T2IModel(
        UNet2DConditionModel(**unet),
        AutoencoderKL(**vae),
        CLIPTextModel(CLIPTextConfig(**text, **ids)),
        tok,
        PNDMScheduler(**SCHEDULER),
    )
