"""The real-checkpoint setting (``configs/sd15.yaml``): it parses and validates, and its
method, agent, LoRA and loop run the same code path on the shipped demo pipeline."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
T2I_SPACES = sorted((REPO / "configs" / "tune").glob("t2i_*.yaml"))


def sd15_on_shipped_pipeline(*extra: str):
    """``configs/sd15.yaml`` with only what needs SD itself (the pipeline, its data, prompts,
    sampling) replaced by the shipped demo's: its method, agent, LoRA and loop stay."""
    from unlearn.config import Config, from_mapping, load_config
    from unlearn.pretrain import shipped_dirs

    sd, demo = load_config(REPO / "configs" / "sd15.yaml"), load_config(REPO / T2I_DEMO)
    pipe, _ = shipped_dirs(demo)
    d, dd = sd.to_dict(), demo.to_dict()
    for sec in ("data", "t2i", "pretrain", "eval", "forget"):
        d[sec] = dd[sec]
    d["model"] = {**dd["model"], **{k: d["model"][k] for k in ("train", "lora_rank")}}
    d["model"]["pretrained"] = str(pipe)
    d["unlearn"] = {**d["unlearn"], "steps": 2, "batch_size": 4}
    d["eval"]["proxy_batch"] = 4
    return from_mapping(Config, d), pipe


T2I_DEMO = "configs/t2i_demo.yaml"


def test_sd15_config_is_the_real_checkpoint_setting():
    from unlearn.agents import get_agent
    from unlearn.config import load_config
    from unlearn.methods import get_method
    from unlearn.tuners import load_space
    from unlearn.tuners.space import validate_space

    sd = load_config(REPO / "configs" / "sd15.yaml")
    assert sd.model.kind == "t2i" and sd.model.train == "lora" and sd.data.resolution == 512
    assert sd.model.pretrained.count("/") == 1  # a hub id, loaded with from_pretrained
    assert sd.forget.concept == "Van Gogh" and sd.forget.anchor == "a painting"
    assert sd.forget.paraphrases and sd.forget.retain_prompts
    get_method(sd.method), get_agent(sd.agent, default_lam=sd.method.lam)
    for f in T2I_SPACES:
        validate_space(load_space(f), sd)


def test_sd15_settings_run_the_same_path_on_the_shipped_pipeline(tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    from unlearn.models import save_model
    from unlearn.task import make_unlearner

    cfg, pipe = sd15_on_shipped_pipeline()
    unl = make_unlearner(cfg).unlearner
    base = {n: p.detach().clone() for n, p in unl.model.unet.named_parameters()}
    stats = unl.step(2)
    assert all(s.forget_loss > 0 for s in stats)
    moved = {
        n for n, p in unl.model.unet.named_parameters() if not torch.equal(base[n], p.detach())
    }
    assert moved and all("lora" in n for n in moved)  # LoRA rank 8 trains, the UNet stays
    save_model(unl.model, tmp_path / "out")
    out = StableDiffusionPipeline.from_pretrained(str(tmp_path / "out"))
    out.load_lora_weights(str(tmp_path / "out"))
    assert Path(pipe).is_dir()
