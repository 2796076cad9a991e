"""SD-1.5's structure in CI: its UNet, VAE and CLIP text encoder from the published
configurations at reduced widths (every block type, the attention layout, cross-attention
dim 768, the module names LoRA targets, the VAE's scaling factor), one LoRA ESD step and one
guided sampling step through the project's own code."""

from __future__ import annotations

import pytest
import torch
from helpers import t2i_cfg

WORDS = ("a", "painting", "in", "the", "style", "of", "van", "gogh", "photo", "city")


@pytest.mark.slow
def test_lora_esd_and_sampling_run_on_sd15s_module_structure():
    from unlearn.agents import get_agent
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.methods import get_method
    from unlearn.models.t2i.sd15 import UNET, sd15_model
    from unlearn.unlearner import Unlearner

    model = sd15_model(0.05, WORDS, sample_size=8)
    cfg = model.unet.config
    assert tuple(cfg.down_block_types) == UNET["down_block_types"]
    assert tuple(cfg.up_block_types) == UNET["up_block_types"]
    assert cfg.cross_attention_dim == 768 == model.text_encoder.config.hidden_size
    assert model.scaling_factor == 0.18215 and model.image_resolution == 64
    model.configure_training("lora", lora_rank=8)
    lora = {n for n, p in model.unet.named_parameters() if p.requires_grad}
    targets = {n.split(".lora_")[0] for n in lora}
    # every attention projection of SD-1.5's transformer blocks, self and cross
    names = {n for n, _ in model.unet.named_modules()}
    ends = tuple(f"{a}.{p}" for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v"))
    want = {n for n in names if n.endswith((*ends, "attn1.to_out.0", "attn2.to_out.0"))}
    assert targets == want and any(n.startswith("mid_block.") for n in targets)
    assert len(want) == 16 * 8  # 16 transformer blocks, two attentions of four projections

    ids = model.set_prompts(["a painting in the style of van gogh", "a photo of a city"])
    lat = (4, 8, 8)
    forget = ImageData(torch.randn(4, *lat), torch.tensor([ids[0]] * 4), 0)
    retain = ImageData(torch.randn(4, *lat), torch.tensor([ids[1]] * 4), 0)
    split = ForgetSplit(retain, forget, torch.zeros(8, dtype=torch.bool))
    run = t2i_cfg("unlearn.batch_size=2", "method.name=esd", "method.lam=1.0")
    base = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    agent = get_agent(run.agent, default_lam=1.0)
    unl = Unlearner(model, get_method(run.method), agent, split, run, "cpu", grad_stats_every=0)
    (stat,) = unl.step(1)
    assert stat.forget_loss > 0
    moved = {n for n, p in model.unet.named_parameters() if not torch.equal(base[n], p.detach())}
    assert moved and moved <= lora  # the adapters train, SD's weights stay
    img = model.generate(["a photo of a city"], steps=1, guidance=7.5)
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()
