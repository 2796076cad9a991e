"""SDXL base's structure in CI: its UNet, VAE and both CLIP text encoders from the published
configurations at reduced widths (every block type, transformer depths 1 / 2 / 10,
cross-attention dim 2048 = 768 + 1280, the pooled and time-id added conditioning, the module
names LoRA targets, the VAE's scaling factor), one LoRA ESD step and one guided sampling step
through the project's own code."""

from __future__ import annotations

import pytest
import torch
from helpers import sdxl_cfg

WORDS = ("a", "painting", "in", "the", "style", "of", "van", "gogh", "photo", "city")


@pytest.mark.slow
def test_lora_esd_and_sampling_run_on_sdxls_module_structure():
    from unlearn.agents import get_agent
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.methods import get_method
    from unlearn.models.sdxl.published import UNET, sdxl_base_model
    from unlearn.unlearner import Unlearner

    model = sdxl_base_model(0.1, WORDS, sample_size=8)
    cfg = model.unet.config
    assert tuple(cfg.down_block_types) == UNET["down_block_types"]
    assert tuple(cfg.transformer_layers_per_block) == (1, 2, 10)
    hidden = model.text_encoder.config.hidden_size + model.text_encoder_2.config.hidden_size
    assert cfg.cross_attention_dim == hidden == 2048
    assert cfg.projection_class_embeddings_input_dim == 6 * 256 + 1280
    assert model.scaling_factor == 0.13025 and model.image_resolution == 64
    model.configure_training("lora", lora_rank=8)
    lora = {n for n, p in model.unet.named_parameters() if p.requires_grad}
    targets = {n.split(".lora_")[0] for n in lora}
    names = {n for n, _ in model.unet.named_modules()}
    ends = tuple(f"{a}.{p}" for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v"))
    want = {n for n in names if n.endswith((*ends, "attn1.to_out.0", "attn2.to_out.0"))}
    assert targets == want and any(n.startswith("mid_block.") for n in targets)
    # SDXL base's 70 transformer blocks (down 2·1 + 2·10, mid 10, up 3·10 + 3·2), two
    # attentions of four projections each
    assert len(want) == 70 * 8

    ids = model.set_prompts(["a painting in the style of van gogh", "a photo of a city"])
    lat = (4, 8, 8)
    forget = ImageData(torch.randn(2, *lat), torch.tensor([ids[0]] * 2), 0)
    retain = ImageData(torch.randn(2, *lat), torch.tensor([ids[1]] * 2), 0)
    split = ForgetSplit(retain, forget, torch.zeros(4, dtype=torch.bool))
    run = sdxl_cfg("unlearn.batch_size=1", "method.name=esd", "method.lam=1.0")
    run_esd = get_method(run.method)
    base = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    agent = get_agent(run.agent, default_lam=1.0)
    unl = Unlearner(model, run_esd, agent, split, run, "cpu", grad_stats_every=0)
    (stat,) = unl.step(1)
    assert stat.forget_loss > 0
    moved = {n for n, p in model.unet.named_parameters() if not torch.equal(base[n], p.detach())}
    assert moved and moved <= lora  # the adapters train, SDXL's weights stay
    img = model.generate(["a photo of a city"], steps=1, guidance=7.5)
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()
