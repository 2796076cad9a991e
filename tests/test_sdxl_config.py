"""The real-checkpoint SDXL setting (``configs/sdxl.yaml``): it parses and validates, and its
method, agent, LoRA, data-free sets and loop run the same code path on an offline SDXL
pipeline with only what needs the hub replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SDXL_DEMO = REPO / "configs" / "sdxl_demo.yaml"


def test_shipped_sdxl_demo_is_found_by_key_and_draws_the_asked_digit_in_plain_diffusers():
    """The shipped demo pipeline (at most 8 MB) is the base model of configs/sdxl_demo.yaml
    whatever the unlearning settings, not of a config that trains it differently, and plain
    diffusers' ``StableDiffusionXLPipeline`` draws the digit a prompt asks for."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from unlearn.config import load_config
    from unlearn.pretrain import load_pretrained, shipped_dirs

    cfg = load_config(SDXL_DEMO)
    model, clf = shipped_dirs(cfg)
    assert model == REPO / "unlearn" / "assets" / "sdxl_demo" / "pipeline"
    assert clf == REPO / "unlearn" / "assets" / "t2i_demo" / "classifier"
    assert sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) <= 8 * 2**20
    sets = ["model.train=lora", "method.name=fdiv", "unlearn.steps=7"]
    assert shipped_dirs(load_config(SDXL_DEMO, sets))[0] == model
    assert shipped_dirs(load_config(SDXL_DEMO, ["pretrain.steps=100"]))[0] is None

    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    pipe.set_progress_bar_config(disable=True)
    classifier = load_pretrained(cfg).classifier
    for digit, word in ((3, "three"), (7, "seven")):
        images = pipe(
            f"a handwritten digit {word}",
            height=32,
            width=32,
            num_inference_steps=10,
            guidance_scale=5.0,
            num_images_per_prompt=8,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
        ).images
        probs, _ = classifier.predict(images.mean(1, keepdim=True) * 2 - 1)
        assert (probs.argmax(1) == digit).sum() >= 7, (word, probs.argmax(1).tolist())


def load_sdxl_yaml():
    from unlearn.config import load_config

    return load_config(REPO / "configs" / "sdxl.yaml")


def sdxl_on(demo, pipe: Path, workdir: Path):
    """``configs/sdxl.yaml`` with only what needs SDXL itself (the pipeline, its prompts,
    sampling, CLIP) replaced by ``demo``'s and ``pipe``: its method, agent, LoRA, data-free
    sets (fewer, shorter samples, no CLIP filter) and loop stay."""
    from unlearn.config import Config, from_mapping

    d, dd = load_sdxl_yaml().to_dict(), demo.to_dict()
    gen = {**d["data"]["generate"], "per_prompt": 2, "steps": 2, "filter": "none"}
    for sec in ("data", "t2i", "pretrain", "eval", "forget"):
        d[sec] = dd[sec]
    d["data"] |= {"source": "generate", "generate": gen}
    d["workdir"] = str(workdir)
    d["model"] = {**dd["model"], **{k: d["model"][k] for k in ("kind", "train", "lora_rank")}}
    d["model"]["pretrained"] = str(pipe)
    d["unlearn"] = {**d["unlearn"], "steps": 2, "batch_size": 2}
    return from_mapping(Config, d)


def test_sdxl_config_is_the_real_checkpoint_setting():
    from unlearn.agents import get_agent
    from unlearn.families import family_of
    from unlearn.methods import get_method
    from unlearn.tuners import load_space
    from unlearn.tuners.space import validate_space

    c = load_sdxl_yaml()
    assert family_of(c).name == "sdxl" and c.model.train == "lora"
    assert c.model.pretrained == "stabilityai/stable-diffusion-xl-base-1.0"
    assert c.data.resolution == 1024 and c.data.source == "generate" and not c.data.root
    assert c.eval.concept_measure == "clip" and c.eval.clip_model
    get_method(c.method), get_agent(c.agent, default_lam=c.method.lam)
    for f in sorted((REPO / "configs" / "tune").glob("t2i_*.yaml")):
        validate_space(load_space(f), c)


@pytest.mark.slow
def test_sdxl_settings_run_the_same_path_offline(tmp_path):
    """configs/sdxl.yaml on the shipped SDXL demo pipeline (its classifier found by key)."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from unlearn.config import load_config
    from unlearn.models import save_model
    from unlearn.task import make_unlearner

    pipe = REPO / "unlearn" / "assets" / "sdxl_demo" / "pipeline"
    wd = tmp_path / "runs"
    wd.mkdir()
    cfg = sdxl_on(load_config(SDXL_DEMO), pipe, wd)
    unl = make_unlearner(cfg).unlearner
    assert len(unl.split.forget) == 2 * len(cfg.forget.prompts)  # per_prompt of each prompt
    base = {n: p.detach().clone() for n, p in unl.model.unet.named_parameters()}
    stats = unl.step(2)
    assert all(s.forget_loss > 0 for s in stats)
    moved = {
        n for n, p in unl.model.unet.named_parameters() if not torch.equal(base[n], p.detach())
    }
    assert moved and all("lora" in n for n in moved)  # LoRA rank 8 trains, the UNet stays
    save_model(unl.model, tmp_path / "out")
    out = StableDiffusionXLPipeline.from_pretrained(str(tmp_path / "out"))
    out.load_lora_weights(str(tmp_path / "out"))
