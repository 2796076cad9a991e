"""The text-to-image family on tiny pipelines built from config (8x8 images, 4x4 latents)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import T2I_TINY, cli, cli_here, t2i_cfg, tiny_pipeline

#: a memorised caption on the tiny data (training image 3 added 20 more times)
MEMORISE = ["t2i.memorise.caption=a secret digit", "t2i.memorise.index=3", "t2i.memorise.copies=20"]


@pytest.mark.slow
def test_t2i_pretrain_resumes_identically(tmp_path):
    from unlearn.models.t2i import load_t2i
    from unlearn.pretrain import cache_dirs, train_base

    class Interrupt(Exception):
        pass

    def stop(task, done, total):
        if task == "unet" and done == 4:
            raise Interrupt

    cfg = t2i_cfg(*MEMORISE, workdir=tmp_path / "a")
    with pytest.raises(Interrupt):
        train_base(cfg, stop)
    out, _ = cache_dirs(cfg)
    assert not (out / "unlearn.json").exists(), "an interrupted run left a pipeline behind"
    seen: list[tuple[str, int]] = []
    train_base(cfg, lambda t, d, n: seen.append((t, d)))
    assert seen[0] == ("unet", 4), "did not resume the UNet from its step-3 checkpoint"
    straight = train_base(t2i_cfg(*MEMORISE, workdir=tmp_path / "b"))
    a, b = load_t2i(out), load_t2i(straight)
    assert "secret" in a.tokenizer.get_vocab()  # the memorised caption's new word
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


# -- pipeline in and out ---------------------------------------------------------------------
def test_saved_pipeline_loads_and_generates_in_plain_diffusers(tmp_path):
    from diffusers import StableDiffusionPipeline

    from unlearn.models.t2i import load_t2i, save_t2i

    model = tiny_pipeline()
    save_t2i(model, tmp_path / "p")
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "p"))
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    prompt = ["a handwritten digit seven"] * 2
    ref = pipe(
        prompt,
        num_inference_steps=3,
        guidance_scale=5.0,
        latents=z,
        height=8,
        width=8,
        output_type="pt",
    ).images
    again = load_t2i(tmp_path / "p")
    ours = again.decode(again.sample_latents(again.encode_text(prompt), 3, 5.0, latents=z))
    assert torch.allclose(ref * 2 - 1, ours, atol=1e-5)
    img = pipe("the number 7", num_inference_steps=2, height=8, width=8).images[0]
    assert img.size == (8, 8)


def test_half_precision_pipeline_loads_back_in_float32(tmp_path):
    from unlearn.models.t2i import load_t2i, save_t2i

    model = tiny_pipeline()
    save_t2i(model, tmp_path / "p16", dtype=torch.float16)
    sizes = sum(f.stat().st_size for f in (tmp_path / "p16").rglob("*.safetensors"))
    save_t2i(model, tmp_path / "p32")
    sizes32 = sum(f.stat().st_size for f in (tmp_path / "p32").rglob("*.safetensors"))
    back = load_t2i(tmp_path / "p16")
    assert sizes < 0.6 * sizes32
    assert back.unet.dtype == torch.float32
    w0, w1 = model.unet.conv_in.weight, back.unet.conv_in.weight
    assert torch.allclose(w0, w1, atol=1e-3) and not torch.equal(w0, w1)


def test_bad_pipeline_directories_name_the_problem(tmp_path):
    from helpers import tiny_model

    from unlearn.models import build_model, save_model
    from unlearn.models.t2i import PipelineLoadError, load_t2i, save_t2i

    tiny_model("ddpm").unet.save_pretrained(tmp_path / "unet_only")
    with pytest.raises(PipelineLoadError, match="UNet2DModel directory; model.kind=t2i needs"):
        load_t2i(tmp_path / "unet_only")
    save_t2i(tiny_pipeline(), tmp_path / "p")
    import shutil

    shutil.rmtree(tmp_path / "p" / "vae")
    with pytest.raises(PipelineLoadError, match=r"missing its vae/ component"):
        load_t2i(tmp_path / "p")
    assert build_model and save_model  # the image families' io stays importable


# -- captions, attributes, prompts -------------------------------------------------------------
def test_measured_attributes_follow_the_image():
    from unlearn.data.captions import slant, thickness

    img = -torch.ones(2, 1, 32, 32)
    img[0, 0, 6:26, 15:17] = 1.0  # thin vertical stroke
    img[1, 0, 6:26, 13:19] = 1.0  # thick vertical stroke
    th = thickness(img)
    assert 1.5 < th[0] < 2.5 and th[1] > 2 * th[0]
    lean = -torch.ones(1, 1, 32, 32)
    for row in range(6, 26):  # top (small row index) to the right
        col = 10 + (26 - row) // 2
        lean[0, 0, row, col : col + 2] = 1.0
    assert float(slant(lean)) > 0.3 and abs(float(slant(img[:1]))) < 1e-6


def test_prompts_with_unknown_words_are_named():
    from unlearn.config import ConfigError
    from unlearn.data.prompts import prompt_spec

    tok = tiny_pipeline().tokenizer
    cfg = t2i_cfg("forget.prompts=[a purple seven, a handwritten digit seven]").forget
    with pytest.raises(ConfigError, match=r"forget.prompts: 'a purple seven' has words .*: purple"):
        prompt_spec(cfg, tok)
    with pytest.raises(ConfigError, match="forget.prompts: empty prompt list"):
        prompt_spec(t2i_cfg("forget.prompts=[]").forget, tok)
    spec = prompt_spec(t2i_cfg("forget.retain_prompts=[]").forget, tok)
    assert len(spec.retain) == 9 and all("seven" not in p for p in spec.retain)


# -- training modes ---------------------------------------------------------------------------
def test_cross_attention_mode_trains_only_cross_attention():
    model = tiny_pipeline()
    model.configure_training("cross_attn")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".attn2." in n for n in names)
    model.configure_training("unet")
    assert all(p.requires_grad for p in model.unet.parameters())
    assert not any(p.requires_grad for p in model.vae.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())


def test_lora_adapters_are_saved_as_adapters_or_merged(tmp_path):
    from diffusers import StableDiffusionPipeline

    from unlearn.models import save_model
    from unlearn.models.t2i import load_t2i, save_t2i

    model = tiny_pipeline()
    model.configure_training("lora", lora_rank=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    with torch.no_grad():
        for n, p in model.unet.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)  # a visible adapter
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    emb = model.encode_text(["the number 7"])
    want = model.sample_latents(emb, 2, 3.0, latents=z)
    save_t2i(model, tmp_path / "adapters")
    assert (tmp_path / "adapters" / "pytorch_lora_weights.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "adapters"))
    pipe.load_lora_weights(str(tmp_path / "adapters"))
    got = pipe(
        ["the number 7"],
        num_inference_steps=2,
        guidance_scale=3.0,
        latents=z,
        height=8,
        width=8,
        output_type="latent",
    ).images
    assert torch.allclose(got, want, atol=1e-4)
    model.lora_merge = True
    save_model(model, tmp_path / "merged")
    assert not (tmp_path / "merged" / "pytorch_lora_weights.safetensors").exists()
    merged = load_t2i(tmp_path / "merged")
    assert torch.allclose(merged.sample_latents(emb, 2, 3.0, latents=z), want, atol=1e-4)


def test_lora_without_peft_is_a_config_error(monkeypatch):
    from unlearn.config import ConfigError
    from unlearn.families.t2i.task import check_train_mode

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match="model.train: 'lora' needs peft"):
        check_train_mode(t2i_cfg("model.train=lora"))


# -- ESD through the one loop -------------------------------------------------------------------
def test_esd_erases_towards_negative_guidance_and_keeps_retain(t2i_workdir):
    from unlearn.task import make_unlearner

    cfg = t2i_cfg("unlearn.steps=8", "unlearn.lr=0.003", "method.lam=1.0", workdir=t2i_workdir)
    unl = make_unlearner(cfg).unlearner
    first = unl.step(1)[0]
    assert first.retain_loss == pytest.approx(0.0, abs=1e-10)  # the model is the original
    assert first.forget_loss > 0
    stats = unl.step(7)
    assert stats[-1].forget_loss < first.forget_loss
    assert stats[-1].retain_loss > 0  # λ = 1: nothing holds the retain prompts
    unl.reset(0)
    again = unl.step(1)[0]
    assert again.forget_loss == pytest.approx(first.forget_loss, rel=1e-6)


@pytest.mark.parametrize("name", ["naive", "neggrad"])
def test_baselines_run_on_t2i(t2i_workdir, name):
    from unlearn.task import make_unlearner

    unl = make_unlearner(t2i_cfg(f"method.name={name}", workdir=t2i_workdir)).unlearner
    stats = unl.step(2)
    assert all(s.retain_loss > 0 and s.forget_loss > 0 for s in stats)


def test_method_without_t2i_support_is_refused(t2i_workdir):
    from unlearn.config import ConfigError
    from unlearn.task import make_unlearner

    with pytest.raises(
        ConfigError, match="method.name: 'erasediff' does not support model kind 't2i'"
    ):
        make_unlearner(t2i_cfg("method.name=erasediff", workdir=t2i_workdir))


def test_shipped_t2i_demo_assets_are_matched_by_key():
    from unlearn.config import load_config
    from unlearn.pretrain import shipped_dirs

    demo = Path(__file__).resolve().parents[1] / "configs/t2i_demo.yaml"
    model, clf = shipped_dirs(load_config(demo))
    assert model is not None and model.name == "pipeline" and clf is not None
    assert (model / "model_index.json").is_file()
    # unlearning settings do not change the pipeline; its training does
    assert shipped_dirs(load_config(demo, ["method.lam=0.3", "model.train=lora"]))[0] == model
    assert shipped_dirs(load_config(demo, ["t2i.cond_drop=0.2"]))[0] is None


# -- the memorised caption --------------------------------------------------------------------
def test_memorised_copies_carry_their_caption_and_are_measured(t2i_workdir):
    from unlearn.data import load_splits
    from unlearn.families.t2i.pretrain import caption_batch, memorised_image
    from unlearn.metrics.t2i_memorise import prompt_reproduction
    from unlearn.models.t2i import load_t2i
    from unlearn.pretrain import locate

    cfg = t2i_cfg(*MEMORISE, workdir=t2i_workdir)
    train = load_splits(cfg.data).train
    mem = cfg.t2i.memorise
    attrs = [[] for _ in range(len(train))]
    heavy = t2i_cfg(*MEMORISE, f"t2i.memorise.copies={9 * len(train)}").t2i.memorise
    idx, texts = caption_batch(
        train.labels, attrs, heavy, 400, torch.Generator().manual_seed(0), 0.1
    )
    copies = [t == mem.caption for t in texts]
    assert 0.8 < sum(copies) / 400 < 0.95  # 90% of the draws, less the dropped captions
    assert all(int(i) == mem.index for i, c in zip(idx, copies, strict=True) if c)
    assert (
        mem.caption
        not in caption_batch(
            train.labels,
            attrs,
            t2i_cfg("t2i.memorise.copies=0").t2i.memorise,
            400,
            torch.Generator().manual_seed(0),
            0.1,
        )[1]
    )
    model = load_t2i(locate(t2i_cfg(workdir=t2i_workdir))[0])
    image = memorised_image(cfg)
    assert torch.equal(image, train.images[mem.index])
    far = prompt_reproduction(model, cfg, image, [mem.caption, "a handwritten digit one"])
    everything = prompt_reproduction(
        model, t2i_cfg(*MEMORISE, "t2i.memorise.radius=2.0"), image, [mem.caption]
    )
    assert [r.prompt for r in far] == [mem.caption, "a handwritten digit one"]
    assert all(0.0 <= r.rate <= 1.0 for r in far) and everything[0].rate == 1.0


@pytest.mark.slow
def test_memorised_caption_settings_are_checked_and_keyed(tmp_path):
    from unlearn.config import ConfigError
    from unlearn.families.t2i.pretrain import check_memorise, t2i_model_key

    key = t2i_model_key(t2i_cfg(*MEMORISE))
    assert t2i_model_key(t2i_cfg(*MEMORISE, "t2i.memorise.radius=0.5")) == key  # evaluation only
    assert t2i_model_key(t2i_cfg(*MEMORISE, "t2i.memorise.copies=5")) != key
    plain = t2i_model_key(t2i_cfg())  # no copies: the key of a pipeline without a caption
    assert plain != key and plain == t2i_model_key(t2i_cfg("t2i.memorise.index=9"))
    with pytest.raises(ConfigError, match="t2i.memorise.caption: empty but copies=20"):
        check_memorise(t2i_cfg(*MEMORISE, "t2i.memorise.caption="), 100)
    with pytest.raises(ConfigError, match="t2i.memorise.caption: .* at most 10 fit"):
        check_memorise(t2i_cfg(*MEMORISE, "t2i.memorise.caption=" + " digit" * 11), 100)
    with pytest.raises(ConfigError, match="t2i.memorise.copies: -1 is out of range"):
        t2i_cfg("t2i.memorise.copies=-1")
    sets = [a for s in [*T2I_TINY, *MEMORISE, f"workdir={tmp_path}"] for a in ("--set", s)]
    r = cli_here("pretrain", *sets, "--set", "t2i.memorise.index=100000")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-500:]
    assert "t2i.memorise.index: 100000 is out of range" in lines[0]
    assert not list(tmp_path.rglob("t2i-*")), "a refused pretrain left files behind"


# -- metrics and the CLI ------------------------------------------------------------------------
def test_eval_is_deterministic_and_writes_prompt_grids(t2i_workdir, tmp_path):
    from unlearn.evaluation import evaluate_dir
    from unlearn.pretrain import locate

    cfg = t2i_cfg(workdir=t2i_workdir)
    model_dir, _ = locate(cfg)
    a = evaluate_dir(cfg, model_dir, out=tmp_path / "a")
    b = evaluate_dir(cfg, model_dir, out=tmp_path / "b")
    assert a.result.to_dict() == b.result.to_dict()
    assert set(a.result.per_prompt) == {
        "a handwritten digit seven",
        "the number 7",
        "a handwritten digit one",
        "the digit two",
    }
    assert len(list((tmp_path / "a").glob("0*_*.png"))) == 4
    assert (tmp_path / "a" / "prompts.png").is_file()


@pytest.mark.slow
def test_cli_run_and_eval_json(t2i_workdir):
    empty = t2i_workdir / "defaults.yaml"  # the config defaults, as the fixture used
    empty.write_text("{}\n")
    sets = ["--config", str(empty)]
    sets += [a for s in [*T2I_TINY, f"workdir={t2i_workdir}"] for a in ("--set", s)]
    r = cli("run", *sets, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for side in ("before", "after"):
        assert {"concept_rate", "paraphrase_concept_rate", "retain_accuracy", "fid"} <= set(
            res[side]
        )
    out = Path(res["model_dir"])
    assert (out / "model_index.json").is_file()
    e = cli("eval", str(out), *sets, "--json")
    assert e.returncode == 0, e.stderr[-2000:]
    assert json.loads(e.stdout)["concept_rate"] == res["after"]["concept_rate"]
    bad = cli_here("run", *sets, "--set", "forget.prompts=[a handwritten digit sevn]")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "sevn" in lines[0] and "forget.prompts" in lines[0]


@pytest.mark.parametrize("agent", ["static", "schedule", "variational", "dual", "hybrid"])
def test_esd_runs_with_every_lambda_agent(t2i_workdir, agent):
    from unlearn.task import make_unlearner

    cfg = t2i_cfg(f"agent.name={agent}", "unlearn.eval_every=2", workdir=t2i_workdir)
    res = make_unlearner(cfg).unlearner.run()
    assert res.status == "finished" and res.steps == 3
    assert all(0.0 <= lam <= 1.0 for lam in res.lambdas)
