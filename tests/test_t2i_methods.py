"""The seeds' methods on text-to-image pipelines (f-divergence against the anchor concept,
constrained unlearning, VDU, SISS on prompt-image pairs), through the one loop, on the tiny
pipeline built from config."""

from __future__ import annotations

import pytest
import torch
from helpers import t2i_cfg

ANCHOR = "forget.anchor=a handwritten digit"
CAPTION = [
    "forget.caption=a picture of a number written by hand",
    "forget.caption_images=[0]",
    "forget.concept=",
    "forget.prompts=[]",
    "forget.paraphrases=[]",
]


def unlearner(t2i_workdir, *sets: str):
    from unlearn.task import make_unlearner

    return make_unlearner(t2i_cfg(*sets, workdir=t2i_workdir)).unlearner


# -- f-divergence against the anchor concept --------------------------------------------------
def _b(data, n: int):
    from unlearn.types import Batch

    return Batch(data.images[:n], data.labels[:n])


def _replay_forget_draws(model, seed: int, n: int, shape):
    """The (t, ε) a method draws for its forget batch after the retain batch's (t, ε)."""
    g = torch.Generator().manual_seed(seed)
    model.sample_t(n, g), torch.randn(shape, generator=g)
    t = model.sample_t(n, g)
    return t, torch.randn(shape, generator=g)


def test_fdiv_kl_is_half_the_mse_to_the_original_on_the_anchor_prompt(t2i_workdir):
    unl = unlearner(t2i_workdir, "method.name=fdiv", "method.lam=1.0", ANCHOR)
    model, method = unl.model, unl.method
    anchor_id = model.prompts.index("a handwritten digit")
    assert method.anchor_label == anchor_id == model.anchor_id
    retain, forget = _b(unl.split.retain, 6), _b(unl.split.forget, 6)
    with torch.no_grad():
        terms = method.loss(model, retain, forget, 1.0, torch.Generator().manual_seed(3))
        t, eps = _replay_forget_draws(model, 3, 6, forget.images.shape)
        a_t = model.add_noise(forget.images, t, eps)
        pred = model.eps(a_t, t, forget.labels)
        ref = model.eps(a_t, t, torch.full_like(forget.labels, anchor_id))
    mse = (pred - ref).pow(2).flatten(1).mean(1)
    assert float(mse.mean()) > 0  # the concept and the anchor differ before unlearning
    assert float(terms.forget) == pytest.approx(float(mse.mean()) / 2, rel=1e-4)


@pytest.mark.parametrize("div", ["kl", "hellinger", "chi2", "amari"])
@pytest.mark.slow
def test_fdiv_pulls_the_concept_onto_the_anchor(t2i_workdir, div):
    unl = unlearner(
        t2i_workdir,
        "method.name=fdiv",
        "method.lam=1.0",
        f"method.options={{divergence: {div}, alpha: 0.3}}",
        "unlearn.lr=0.003",
        ANCHOR,
    )
    # move the live model off the frozen original, so the concept's prediction is far from
    # the anchor's; the divergence on one fixed batch must then fall as it trains
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in unl.model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    retain, forget = _b(unl.split.retain, 16), _b(unl.split.forget, 16)

    def term() -> float:
        with torch.no_grad():
            return float(unl.method.loss(unl.model, retain, forget, 1.0, torch.Generator()).forget)

    before = term()
    unl.step(6)
    assert term() < 0.8 * before


def test_fdiv_anchor_class_is_refused_on_t2i(t2i_workdir):
    from unlearn.config import ConfigError

    with pytest.raises(ConfigError, match=r"method.options.anchor: 'class' is not allowed .*'t2i'"):
        unlearner(t2i_workdir, "method.name=fdiv", "method.options={anchor: class}")


# -- constrained unlearning -------------------------------------------------------------------
def test_reverse_kl_on_t2i_is_negative_guidance_with_eta_from_the_multiplier(t2i_workdir):
    """At λ, ε* = ε_pre(∅) - λ/(1-λ)·(ε_pre(c) - ε_pre(∅)): ESD's target with η = λ/(1-λ)."""
    from unlearn.methods.common import sq_err

    unl = unlearner(t2i_workdir, "method.name=constrained", "method.options={target: reverse_kl}")
    model, m = unl.model, unl.method
    lam = 0.6
    retain, forget = _b(unl.split.retain, 4), _b(unl.split.forget, 4)
    with torch.no_grad():
        terms = m.loss(model, retain, forget, lam, torch.Generator().manual_seed(5))
        t, eps = _replay_forget_draws(model, 5, 4, forget.images.shape)
        a_t = model.add_noise(forget.images, t, eps)
        e_c = model.eps(a_t, t, forget.labels)
        e_0 = model.eps(a_t, t, torch.zeros_like(forget.labels))
        esd_target = e_0 - lam / (1 - lam) * (e_c - e_0)
        want = float(sq_err(e_c, esd_target).mean())
    assert float(terms.retain) == pytest.approx(0.0, abs=1e-10)  # still the original
    assert float(terms.total - terms.retain) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("target", ["forward_kl", "reverse_kl", "likelihood"])
def test_constrained_dual_ascent_raises_the_multiplier_while_violated(t2i_workdir, target):
    cfg = [
        "method.name=constrained",
        f"method.options={{target: {target}, ratio: 1.5}}",
        "method.lam=0.1",
        "agent.name=dual",
        "agent.options={eta: 0.5}",
        "unlearn.steps=4",
    ]
    res = unlearner(t2i_workdir, *cfg).run()
    assert res.status == "finished"
    # the forget loss starts at the pretrained one, below ratio x it: violated, λ rises
    assert res.lambdas[1] > res.lambdas[0]


# -- VDU: forget prompts only, a class or an attribute ----------------------------------------
def test_vdu_feature_unlearning_of_thick_strokes(t2i_workdir):
    unl = unlearner(
        t2i_workdir,
        "method.name=vdu",
        "method.lam=1.0",
        "method.options={margin: 5.0, gamma: 0.01}",
        "forget.concept=thick",
        "forget.prompts=[a handwritten digit with thick strokes]",
        "forget.paraphrases=[a digit with thick strokes]",
        "unlearn.lr=0.003",
    )
    assert not unl.method.uses_retain
    # the forget latents are those of training images measured thick
    mask = unl.split.forget_mask
    assert 0 < int(mask.sum()) == len(unl.split.forget) < 0.5 * len(mask)
    stats = unl.step(5)
    assert stats[-1].forget_loss > stats[0].forget_loss  # plasticity raises the forget loss
    assert float(unl.method.regularizer(unl.model).detach()) > 0  # the stability term sees the move


def test_vdu_regulariser_covers_only_what_trains(t2i_workdir):
    unl = unlearner(t2i_workdir, "method.name=vdu", "model.train=cross_attn")
    names = set(unl.method.mu)
    assert names and all(".attn2." in n for n in names)


def test_vdu_fisher_on_lora_adapters(t2i_workdir):
    unl = unlearner(
        t2i_workdir,
        "method.name=vdu",
        "model.train=lora",
        "model.lora_rank=2",
        "method.options={variance: fisher, fisher_batches: 2, fisher_batch_size: 4}",
    )
    assert all("lora" in n for n in unl.method.precision)
    assert unl.step(2)[-1].forget_loss > 0


# -- SISS on (caption, image) pairs -----------------------------------------------------------
def test_memorised_caption_forget_set_is_its_image_and_copies(t2i_workdir):
    from unlearn.families.t2i.task import load_t2i_task

    cfg = t2i_cfg(*CAPTION, "method.name=siss", workdir=t2i_workdir)
    task = load_t2i_task(cfg)
    cap = task.model.prompts.index("a picture of a number written by hand")
    forget = task.data.split.forget
    assert len(forget) >= 1 and bool((forget.labels == cap).all())
    memo = task.data.spec.target[1]
    assert task.data.spec.target[0] == "copy"
    assert bool(memo.copies(memo.images).all())
    far = -torch.ones_like(memo.images)
    far[..., ::2, :] = 1.0
    assert not bool(memo.copies(far).any())
    assert task.eval_data.spec.prompts == ("a picture of a number written by hand",)
    from unlearn.metrics.t2i import evaluate_t2i

    res, samples = evaluate_t2i(task.model, task.classifier, cfg, task.eval_data)
    want = float(memo.copies(samples[: cfg.t2i.samples_per_prompt]).float().mean())
    assert res.concept_rate == want  # the caption's samples that reproduce its image


def test_siss_unlearns_the_memorised_caption(t2i_workdir):
    unl = unlearner(t2i_workdir, *CAPTION, "method.name=siss", "method.lam=0.5", "unlearn.lr=0.003")
    stats = unl.step(4)
    assert all(torch.isfinite(torch.tensor([s.retain_loss, s.forget_loss])).all() for s in stats)
    assert stats[-1].forget_loss > stats[0].forget_loss


def test_caption_images_need_a_caption(t2i_workdir):
    from unlearn.config import ConfigError

    with pytest.raises(ConfigError, match=r"forget.caption_images: \[3\] is not allowed"):
        unlearner(t2i_workdir, "forget.caption_images=[3]")
    with pytest.raises(ConfigError, match=r"forget.caption_images: 99999 is not allowed"):
        unlearner(t2i_workdir, CAPTION[0], "forget.caption_images=[99999]", "method.name=siss")


# -- every λ agent ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fdiv", "constrained", "vdu", "siss"])
@pytest.mark.parametrize("agent", ["static", "schedule", "variational", "dual", "hybrid"])
@pytest.mark.slow
def test_t2i_methods_run_with_every_lambda_agent(t2i_workdir, method, agent):
    extra = CAPTION if method == "siss" else [ANCHOR]
    unl = unlearner(
        t2i_workdir, f"method.name={method}", f"agent.name={agent}", "unlearn.steps=2", *extra
    )
    res = unl.run()
    assert res.status == "finished" and res.steps == 2
    assert all(0.0 <= lam <= 1.0 for lam in res.lambdas)


# -- the frozen original under LoRA ------------------------------------------------------------
@pytest.mark.parametrize("method", ["esd", "fdiv"])
def test_under_lora_the_original_is_the_live_unet_with_adapters_off(t2i_workdir, method):
    """A LoRA run's frozen original is no copy (its memory is the model's) and predicts what
    a frozen copy with the adapters switched off predicts, after the adapters have trained;
    the live UNet keeps its adapters and its train mode."""
    from unlearn.methods.common import AdaptersOff, frozen_copy

    unl = unlearner(
        t2i_workdir, ANCHOR, "model.train=lora", "model.lora_rank=2", f"method.name={method}"
    )
    ref = unl.method.ref_unet if method == "esd" else unl.method.anchor.unet
    assert isinstance(ref, AdaptersOff) and not list(ref.parameters())
    unl.step(3)
    unet = unl.model.unet
    assert any(p.abs().sum() > 0 for n, p in unet.named_parameters() if "lora_B" in n)
    copy = frozen_copy(unet)
    copy.disable_adapters()
    x = torch.randn(2, unl.model.channels, unl.model.resolution, unl.model.resolution)
    t = torch.tensor([100, 700])
    labels = torch.tensor([1, 2])
    unet.train()
    live = unl.model.eps(x, t, labels).detach()
    original = unl.model.eps(x, t, labels, unet=ref)
    assert torch.allclose(original, unl.model.eps(x, t, labels, unet=copy), atol=1e-6)
    assert not torch.allclose(original, live, atol=1e-6)  # the adapters are back on
    assert torch.equal(unl.model.eps(x, t, labels).detach(), live) and unet.training
    # the episode's snapshot holds what can change (the adapters), and a reset restores them
    params = dict(unl.model.named_parameters())
    kept = [k for k in unl._initial if k in params]
    assert kept and all("lora_" in k for k in kept)
    unl.reset(0)
    assert all(torch.equal(params[k], unl._initial[k]) for k in kept)
    assert torch.equal(unl.model.eps(x, t, labels).detach(), original)  # B = 0 again


def test_a_full_unet_run_keeps_a_frozen_copy(t2i_workdir):
    unl = unlearner(t2i_workdir, "model.train=unet")
    ref = unl.method.ref_unet
    assert list(ref.parameters()) and all(not p.requires_grad for p in ref.parameters())
