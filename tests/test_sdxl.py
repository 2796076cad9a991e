"""The SDXL family on tiny SDXL-format pipelines built from config (8x8 images, 4x4 latents,
two text encoders of width 16): plain-diffusers round trips, every t2i method and λ agent
through the one loop, and the bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import SDXL_TINY, T2I_TINY, cli_here, sdxl_cfg

PROMPT = ["a handwritten digit seven", "the number 7"]
#: a memorised caption and its image: SISS on a prompt-image pair
CAPTION = [
    "forget.caption=a picture of a number written by hand",
    "forget.caption_images=[0]",
    "forget.concept=",
    "forget.prompts=[]",
    "forget.paraphrases=[]",
]


def tiny_sdxl(seed: int = 0):
    from unlearn.data.captions import VOCABULARY
    from unlearn.models.sdxl import build_sdxl

    torch.manual_seed(seed)
    return build_sdxl(sdxl_cfg(), VOCABULARY, channels=1, resolution=8)


def _plain(out, z, lora: bool = False):
    """Latents from plain diffusers' ``StableDiffusionXLPipeline`` loaded from ``out``."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(out))
    if lora:
        pipe.load_lora_weights(str(out))
    return pipe(
        PROMPT,
        num_inference_steps=3,
        guidance_scale=5.0,
        latents=z.clone(),
        height=8,
        width=8,
        output_type="latent",
    ).images


@pytest.mark.slow
def test_saved_sdxl_pipeline_and_lora_adapters_generate_the_same_in_plain_diffusers(tmp_path):
    from unlearn.models import load_model, save_model
    from unlearn.models.sdxl import SDXLModel

    model = tiny_sdxl()
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    cond = model.encode_cond(PROMPT)
    # the context is both encoders' states side by side; the pooled embedding the second's
    assert cond.hidden.shape[-1] == model.unet.config.cross_attention_dim == 32
    assert cond.pooled.shape == (2, 16)
    save_model(model, tmp_path / "full")
    assert json.loads((tmp_path / "full" / "model_index.json").read_text())["_class_name"] == (
        "StableDiffusionXLPipeline"
    )
    assert torch.allclose(
        _plain(tmp_path / "full", z), model.sample_latents(cond, 3, 5.0, latents=z), atol=1e-5
    )
    model.configure_training("lora", lora_rank=2)
    with torch.no_grad():
        for n, p in model.unet.named_parameters():
            if "lora_B" in n:
                p.add_(0.3)  # a visible adapter
    want = model.sample_latents(cond, 3, 5.0, latents=z)
    save_model(model, tmp_path / "adapters")
    assert (tmp_path / "adapters" / "pytorch_lora_weights.safetensors").is_file()
    assert torch.allclose(_plain(tmp_path / "adapters", z, lora=True), want, atol=1e-4)
    back = load_model(tmp_path / "adapters")  # adapters merged on load
    assert isinstance(back, SDXLModel)
    assert torch.allclose(
        back.sample_latents(back.encode_cond(PROMPT), 3, 5.0, latents=z), want, atol=1e-4
    )
    model.lora_merge = True
    save_model(model, tmp_path / "merged")
    assert not (tmp_path / "merged" / "pytorch_lora_weights.safetensors").exists()
    assert torch.allclose(_plain(tmp_path / "merged", z), want, atol=1e-4)


# -- every t2i method, and every λ agent, through the one loop --------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "sets",
    [
        ["method.name=esd", "model.train=lora", "model.lora_rank=2"],
        ["method.name=esd", "agent.name=schedule"],
        ["method.name=esd", "agent.name=variational"],
        ["method.name=esd", "agent.name=dual", "model.train=cross_attn"],
        ["method.name=esd", "agent.name=hybrid"],
        ["method.name=constrained", "forget.anchor=a handwritten digit"],
        ["method.name=fdiv", "forget.anchor=a handwritten digit"],
        ["method.name=vdu", "method.options.vdu.margin=10"],
        ["method.name=naive"],
        ["method.name=neggrad"],
        ["method.name=uce", "forget.anchor=a handwritten digit", "unlearn.steps=1"],
        ["method.name=siss", *CAPTION],
    ],
    ids=lambda s: "-".join(x.split("=")[1] for x in s[:2]),
)
def test_t2i_methods_and_agents_unlearn_an_sdxl_pipeline(sdxl_workdir, sets):
    from unlearn.task import make_unlearner

    cfg = sdxl_cfg("unlearn.steps=2", "unlearn.eval_every=2", *sets, workdir=sdxl_workdir)
    unl = make_unlearner(cfg).unlearner
    assert unl.model.kind == "sdxl"
    before = {n: p.detach().clone() for n, p in unl.model.unet.named_parameters()}
    res = unl.run()
    assert res.status == "finished"
    assert all(0.0 <= lam <= 1.0 for lam in res.lambdas)
    changed = [
        n
        for n, p in unl.model.unet.named_parameters()
        if n in before and not torch.equal(p, before[n])
    ]
    if cfg.model.train == "lora":  # the adapters train; the base weights stay
        assert any("lora" in n for n, p in unl.model.unet.named_parameters() if p.requires_grad)
    else:
        assert changed, "unlearning left the UNet unchanged"
    if cfg.method.name == "uce":  # the closed form edits the keys / values of the 32-wide context
        assert changed and all(n.split(".")[-2] in ("to_k", "to_v") for n in changed)
    if cfg.model.train == "cross_attn":
        assert all(".attn2." in n for n in changed)


# -- bad input: exit 2, one line, nothing written -------------------------------------------
def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _refused(tmp_path, *sets: str) -> str:
    (tmp_path / "empty.yaml").write_text("{}\n")
    out = tmp_path / "out"
    r = cli_here("run", "--config", str(tmp_path / "empty.yaml"), *_sets(*sets, f"workdir={out}"))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not out.exists() or not any(out.rglob("*.safetensors")), "a refused run wrote a model"
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny SDXL pipeline and a tiny SD pipeline, saved."""
    from helpers import tiny_pipeline

    from unlearn.models.t2i import save_t2i

    d = tmp_path_factory.mktemp("sdxl-bad")
    save_t2i(tiny_sdxl(), d / "xl")
    save_t2i(tiny_pipeline(), d / "sd")
    return d


def test_a_pipeline_of_the_other_kind_is_refused(saved, tmp_path):
    line = _refused(tmp_path, *T2I_TINY, f"model.pretrained={saved / 'xl'}")
    assert "StableDiffusionXLPipeline" in line and "model.kind=sdxl" in line
    line = _refused(tmp_path, *SDXL_TINY, f"model.pretrained={saved / 'sd'}")
    assert "StableDiffusionPipeline directory" in line and "model.kind=t2i" in line


@pytest.mark.parametrize("part", ["text_encoder_2", "tokenizer_2"])
def test_an_sdxl_pipeline_missing_its_second_encoder_is_refused(saved, tmp_path, part):
    bad = shutil.copytree(saved / "xl", tmp_path / "bad")
    shutil.rmtree(bad / part)
    line = _refused(tmp_path, *SDXL_TINY, f"model.pretrained={bad}")
    assert f"missing its {part}/" in line


def test_a_lora_file_for_another_unet_is_refused(saved, tmp_path):
    from helpers import tiny_pipeline

    from unlearn.models.t2i import save_t2i

    sd = tiny_pipeline()
    sd.configure_training("lora", lora_rank=2)
    save_t2i(sd, tmp_path / "sd-lora")
    bad = shutil.copytree(saved / "xl", tmp_path / "bad")
    shutil.copy(tmp_path / "sd-lora" / "pytorch_lora_weights.safetensors", bad)
    line = _refused(tmp_path, *SDXL_TINY, f"model.pretrained={bad}")
    assert "cannot load the LoRA adapters" in line


def test_a_resolution_off_the_vae_grid_is_refused(saved, tmp_path):
    line = _refused(
        tmp_path,
        *SDXL_TINY,
        f"model.pretrained={saved / 'xl'}",
        "data.source=generate",
        "data.resolution=9",
    )
    assert "data.resolution: 9 is not a multiple of the VAE's scale factor 2" in line
