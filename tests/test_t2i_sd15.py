"""The real-checkpoint setting (``configs/sd15.yaml``): it parses and validates, and its
method, agent, LoRA and loop run the same code path on the shipped demo pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
T2I_SPACES = sorted((REPO / "configs" / "tune").glob("t2i_*.yaml"))


def sd15_on_shipped_pipeline(*extra: str, workdir: Path | None = None):
    """``configs/sd15.yaml`` with only what needs SD itself (the pipeline, its prompts,
    sampling) replaced by the shipped demo's: its method, agent, LoRA, data-free sets
    (fewer, shorter samples, no CLIP filter) and loop stay."""
    from unlearn.config import Config, from_mapping, load_config
    from unlearn.pretrain import shipped_dirs

    sd, demo = load_config(REPO / "configs" / "sd15.yaml"), load_config(REPO / T2I_DEMO)
    pipe, _ = shipped_dirs(demo)
    d, dd = sd.to_dict(), demo.to_dict()
    gen = {**d["data"]["generate"], "per_prompt": 2, "steps": 3, "filter": "none"}
    for sec in ("data", "t2i", "pretrain", "eval", "forget"):
        d[sec] = dd[sec]
    d["data"] |= {"source": "generate", "generate": gen}
    if workdir is not None:
        d["workdir"] = str(workdir)
    d["model"] = {**dd["model"], **{k: d["model"][k] for k in ("train", "lora_rank")}}
    d["model"]["pretrained"] = str(pipe)
    d["unlearn"] = {**d["unlearn"], "steps": 2, "batch_size": 4}
    d["eval"]["proxy_batch"] = 4
    return from_mapping(Config, d), pipe


T2I_DEMO = "configs/t2i_demo.yaml"


def load_sd15():
    from unlearn.config import load_config

    return load_config(REPO / "configs" / "sd15.yaml")


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


@pytest.mark.slow
def test_sd15_settings_run_the_same_path_on_the_shipped_pipeline(tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    from unlearn.models import save_model
    from unlearn.task import make_unlearner

    cfg, pipe = sd15_on_shipped_pipeline(workdir=tmp_path)
    assert load_sd15().data.source == "generate" and not load_sd15().data.root
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


# -- the CLIP concept measure (sd15.yaml's eval.concept_measure) ------------------------------
def tiny_clip(out: Path, pipe: Path) -> Path:
    """A random-weight CLIPModel at the demo's 32 px with the shipped pipeline's word-level
    tokenizer, saved like a hub CLIP (model, tokenizer, image processor)."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = AutoTokenizer.from_pretrained(pipe / "tokenizer")
    ids = {k: getattr(tok, f"{k}_token_id") for k in ("pad", "bos", "eos")}
    text = dict(vocab_size=len(tok), max_position_embeddings=tok.model_max_length)
    text |= {f"{k}_token_id": v for k, v in ids.items()}
    vision = dict(image_size=32, patch_size=8)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    model = CLIPModel(
        CLIPConfig(text_config=text | small, vision_config=vision | small, projection_dim=16)
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    size = {"shortest_edge": 32}, {"height": 32, "width": 32}
    CLIPImageProcessor(size=size[0], crop_size=size[1]).save_pretrained(out)
    return out


@pytest.mark.slow
def test_sd15_clip_measure_runs_end_to_end_through_lora(tmp_path):
    import json

    import yaml
    from helpers import cli, cli_here

    cfg, pipe = sd15_on_shipped_pipeline(workdir=tmp_path / "runs")
    assert load_sd15().eval.concept_measure == "clip" and load_sd15().eval.clip_model
    d = cfg.to_dict()
    d["eval"] |= {"concept_measure": "clip", "clip_model": str(tiny_clip(tmp_path / "clip", pipe))}
    d["eval"] |= {"sampler_steps": 4, "batch_size": 64}
    d["t2i"]["samples_per_prompt"] = 3
    d["workdir"] = str(tmp_path / "runs")
    d["tracking"] = {**d["tracking"], "uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    (tmp_path / "sd15.yaml").write_text(yaml.safe_dump(d))
    r = cli("run", "--config", str(tmp_path / "sd15.yaml"), "--json", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for side in ("before", "after"):
        assert {"concept_rate", "paraphrase_concept_rate", "retain_accuracy", "fid"} <= set(
            res[side]
        )
    assert Path(res["model_dir"], "model_index.json").is_file()
    bad = cli_here("run", "--config", str(tmp_path / "sd15.yaml"), "--set", "eval.clip_model=")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "eval.clip_model" in lines[0]
    gone = str(tmp_path / "no-clip")
    bad = cli_here(
        "run", "--config", str(tmp_path / "sd15.yaml"), "--set", f"eval.clip_model={gone}"
    )
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "no-clip" in lines[0]


@pytest.mark.slow
def test_clip_rates_are_the_fractions_of_clip_logits(tmp_path):
    """Concept rate and retain accuracy equal the fractions computed by hand from the CLIP
    model's own logits on its processor's pixel input."""
    import dataclasses

    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from unlearn.families.t2i.task import load_t2i_task
    from unlearn.metrics.t2i import evaluate_t2i

    cfg, pipe = sd15_on_shipped_pipeline(workdir=tmp_path)
    clip_dir = tiny_clip(tmp_path / "clip", pipe)
    ev = dataclasses.replace(
        cfg.eval, concept_measure="clip", clip_model=str(clip_dir), sampler_steps=3
    )
    t2i = dataclasses.replace(cfg.t2i, samples_per_prompt=8)
    cfg = dataclasses.replace(cfg, eval=ev, t2i=t2i)
    task = load_t2i_task(cfg)
    res, samples = evaluate_t2i(task.model, task.classifier, cfg, task.eval_data)

    model, tok = CLIPModel.from_pretrained(clip_dir), AutoTokenizer.from_pretrained(clip_dir)
    proc = CLIPImageProcessor.from_pretrained(clip_dir)
    spec = task.eval_data.spec
    rgb = ((samples + 1) / 2).repeat(1, 3, 1, 1).numpy()
    pix = proc(
        list(rgb), do_rescale=False, do_resize=False, do_center_crop=False, return_tensors="pt"
    )["pixel_values"]

    def logits(texts):
        t = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return model(
                pixel_values=pix, input_ids=t.input_ids, attention_mask=t.attention_mask
            ).logits_per_image

    n = cfg.t2i.samples_per_prompt
    idx = {p: slice(i * n, (i + 1) * n) for i, p in enumerate(res.prompts)}
    s = logits([spec.prompts[0], spec.anchor])
    concept = (s[:, 0] > s[:, 1]).float()
    want = torch.cat([concept[idx[p]] for p in spec.prompts]).mean()
    assert res.concept_rate == pytest.approx(float(want))
    want = torch.cat([concept[idx[p]] for p in spec.paraphrases]).mean()
    assert res.paraphrase_concept_rate == pytest.approx(float(want))
    a = logits([spec.prompts[0], *spec.retain]).argmax(1) - 1
    want = torch.cat([(a[idx[p]] == i).float() for i, p in enumerate(spec.retain)]).mean()
    assert res.retain_accuracy == pytest.approx(float(want))
    assert 0 < res.retain_accuracy < 1 or 0 < res.concept_rate < 1  # not a trivial case
