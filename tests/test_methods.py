"""Every unlearning method: the shared contract, option validation, compatibility, and the
closed forms behind f-divergence, VDU, constrained and EraseDiff."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_model as tiny

from unlearn.config import ConfigError, MethodConfig
from unlearn.methods import (
    METHODS,
    VDU,
    Constrained,
    EncoderUnlearning,
    EraseDiff,
    FDivergence,
    UnlearningMethod,
    check_compatible,
    gaussian_f_divergence,
    get_method,
)
from unlearn.models import save_model
from unlearn.types import Batch

KINDS = ("ddpm", "cond_ddpm", "vpsde", "vae")
# options that make the contract meaningful on an untrained tiny model (its forget loss is
# about 1, above VDU's default hinge margin, which would make VDU's gradient exactly zero)
CONTRACT_OPTIONS = {
    "vdu": {"margin": 10.0, "variance": "fisher", "fisher_batches": 1, "fisher_batch_size": 4},
}
VARIANTS = {
    name: MethodConfig(name=name, options=CONTRACT_OPTIONS.get(name, {})) for name in METHODS
}
VARIANTS["siss-gradient"] = MethodConfig(name="siss", form="gradient")
VARIANTS["siss_nois-gradient"] = MethodConfig(name="siss_nois", form="gradient")
CASES = [
    (variant, kind)
    for variant, cfg in VARIANTS.items()
    for kind in KINDS
    if kind in METHODS[cfg.name].families
]


def batches(split, n: int = 6) -> tuple[Batch, Batch]:
    return (
        Batch(split.retain.images[:n], split.retain.labels[:n]),
        Batch(split.forget.images[:n], split.forget.labels[:n]),
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _norm(grads) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))


# -- the contract every method passes ----------------------------------------------------------


def test_every_registered_method_is_covered_on_each_family_it_declares():
    assert set(METHODS) == {
        "siss",
        "siss_nois",
        "naive",
        "neggrad",
        "erasediff",
        "vdu",
        "fdiv",
        "constrained",
        "encoder",
        "esd",
        "uce",
        "i2i_encoder",
        "i2i_max_loss",
        "i2i_noisy_label",
        "i2i_retain_label",
        "i2i_random_encoder",
    }
    for name, cls in METHODS.items():
        assert cls.name == name and issubclass(cls, UnlearningMethod)
        assert isinstance(get_method(MethodConfig(name=name)), cls)
        # the t2i, sdxl and i2i families have their own tests on tiny models
        # (tests/test_t2i.py, tests/test_sdxl.py, tests/test_i2i.py)
        image_families = set(cls.families) - {"t2i", "sdxl", "inpaint_ddpm", "mae"}
        assert {k for v, k in CASES if VARIANTS[v].name == name} == image_families
    assert "vae" in METHODS["siss"].families and "vae" in METHODS["encoder"].families


@pytest.mark.parametrize(("variant", "kind"), CASES)
def test_method_contract(variant, kind, split):
    model = tiny(kind)
    method = get_method(VARIANTS[variant])
    check_compatible(method, model)
    method.setup(model, split)
    trainable = method.trainable_parameters(model)
    ids = {id(p) for p in trainable}
    retain, forget = batches(split)

    terms = method.loss(model, retain, forget, 0.5, gen(0))
    for value in (terms.retain, terms.forget, terms.total):
        assert value.dim() == 0 and torch.isfinite(value)
    # the unlearner differentiates retain and forget separately (statistics, gradient forms)
    assert terms.retain.requires_grad and terms.forget.requires_grad
    assert all(isinstance(v, float) for v in (terms.extras or {}).values())

    params = list(model.parameters())
    grads = torch.autograd.grad(terms.total, params, allow_unused=True, retain_graph=True)
    reached = [g for p, g in zip(params, grads, strict=True) if id(p) in ids]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in reached), "no gradient"
    leaked = [g for p, g in zip(params, grads, strict=True) if id(p) not in ids]
    assert all(g is None or not bool(g.any()) for g in leaked), "gradient outside trainables"

    # determinism: same generator seed, same loss; another seed, another draw
    again = method.loss(model, retain, forget, 0.5, gen(0))
    assert torch.equal(terms.total.detach(), again.total.detach())
    other = method.loss(model, retain, forget, 0.5, gen(1))
    assert not torch.equal(terms.total.detach(), other.total.detach())

    # λ as a tensor with gradient (variational agents)
    lam = torch.tensor(0.5, requires_grad=True)
    lt = method.loss(model, retain, forget, lam, gen(2))
    assert torch.isfinite(lt.total)
    (g_lam,) = torch.autograd.grad(lt.total, lam, allow_unused=True, retain_graph=True)
    if method.name == "siss":
        assert g_lam is not None and torch.isfinite(g_lam) and float(g_lam) != 0.0
    else:
        assert g_lam is None or torch.isfinite(g_lam)

    if method.combine == "gradient":
        g_r = torch.autograd.grad(lt.retain, trainable, allow_unused=True, retain_graph=True)
        g_f = torch.autograd.grad(lt.forget, trainable, allow_unused=True, retain_graph=True)
        out = method.combine_gradients(list(g_r), list(g_f), 0.5)
        assert len(out) == len(trainable)
        assert all(o is None or o.shape == p.shape for o, p in zip(out, trainable, strict=True))
        assert 0 < _norm(out) <= method.cfg.clip + 1e-6


def test_encoder_trains_only_the_down_path_and_the_vae_encoder():
    unet_model, vae = tiny("ddpm"), tiny("vae")
    enc = EncoderUnlearning()
    down = {id(p) for p in enc.trainable_parameters(unet_model)}
    assert down == {
        id(p)
        for m in (unet_model.unet.conv_in, unet_model.unet.down_blocks, unet_model.unet.mid_block)
        for p in m.parameters()
    }
    assert not down & {id(p) for p in unet_model.unet.up_blocks.parameters()}
    assert {id(p) for p in enc.trainable_parameters(vae)} == {
        id(p) for p in vae.encoder.parameters()
    }
    # the default is every parameter
    assert get_method(MethodConfig(name="naive")).trainable_parameters(vae) == list(
        vae.parameters()
    )


def test_encoder_retain_term_is_zero_at_the_original_weights(split):
    model = tiny("ddpm")
    enc = EncoderUnlearning()
    enc.setup(model, split)
    terms = enc.loss(model, *batches(split), 0.5, gen(0))
    assert terms.retain.item() == 0.0 and terms.forget.item() > 0


@pytest.mark.parametrize(
    ("variant", "kind"),
    [
        ("siss", "ddpm"),
        ("erasediff", "ddpm"),
        ("vdu", "vae"),
        ("fdiv", "cond_ddpm"),
        ("constrained", "vpsde"),
        ("encoder", "ddpm"),
    ],
)
def test_method_runs_in_the_unlearner(variant, kind, split):
    from unlearn.agents import StaticAgent
    from unlearn.config import load_config
    from unlearn.unlearner import Unlearner

    cfg = load_config(None, ["unlearn.steps=3", "unlearn.batch_size=4", "unlearn.lr=0.01"])
    model = tiny(kind)
    method = get_method(VARIANTS[variant])
    unl = Unlearner(model, method, StaticAgent(0.5), split, cfg, grad_stats_every=1)
    trainable = {id(p) for p in method.trainable_parameters(model)}
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    res = unl.run()
    assert res.status == "finished" and res.steps == 3, res.message
    moved = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    assert moved, "no parameter moved"
    names = {id(p): k for k, p in model.named_parameters()}
    assert moved <= {names[i] for i in trainable}
    if variant == "constrained":
        assert all(math.isfinite(s.extras["violation"]) for s in res.history)


# -- bad input -------------------------------------------------------------------------------


def test_unknown_method_name_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"method.name: 'nope' is not allowed; expected one of siss"
    ):
        get_method(MethodConfig(name="nope"))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("siss", {"c": 1.0}, "method.options.c: unknown option 'c'; allowed options: C, labels"),
        ("naive", {"x": 1}, "method.options.x: unknown option 'x'; allowed options: none"),
        ("siss", {"C": -1.0}, "method.options.C: -1.0 is not allowed; expected a number > 0.0"),
        (
            "siss",
            {"x_from": "forget"},
            "method.options.x_from: 'forget' is not allowed; expected one of retain, all",
        ),
        (
            "fdiv",
            {"divergence": "tv"},
            "method.options.divergence: 'tv' is not allowed; "
            "expected one of kl, hellinger, chi2, amari",
        ),
        (
            "fdiv",
            {"alpha": 2},
            r"method.options.alpha: 2 is not allowed; expected a number in \[-1.0, 1.0\]",
        ),
        ("vdu", {"variance": "checkpoints"}, r"method.options.checkpoints: \[\] is not allowed"),
        ("vdu", {"checkpoints": ["a"]}, "expected \\[\\] unless variance: checkpoints"),
        (
            "vdu",
            {"gamma": "big"},
            "method.options.gamma: 'big' is not allowed; expected a number >= 0.0",
        ),
        (
            "vdu",
            {"fisher_batches": 1.5},
            "method.options.fisher_batches: 1.5 is not allowed; expected an integer",
        ),
        (
            "constrained",
            {"lam_max": 1.0},
            r"method.options.lam_max: 1.0 is not allowed; expected a number in \(0.0, 1.0\)",
        ),
        ("constrained", {"target": "kl"}, "method.options.target: 'kl' is not allowed"),
        ("erasediff", {"eta": -0.1}, "method.options.eta: -0.1 is not allowed"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(name, options, message):
    with pytest.raises(ConfigError, match=message):
        get_method(MethodConfig(name=name, options=options))


def test_gradient_form_only_where_a_method_has_one():
    with pytest.raises(
        ConfigError, match="method.form: 'gradient' is not allowed for method 'naive'"
    ):
        get_method(MethodConfig(name="naive", form="gradient"))
    assert get_method(MethodConfig(name="siss", form="gradient")).combine == "gradient"
    assert get_method(MethodConfig(name="siss")).combine == "loss"
    assert get_method(MethodConfig(name="erasediff")).combine == "gradient"


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("fdiv", "ddpm", "method.name: 'fdiv' needs a class-conditional model"),
        ("fdiv", "vae", "needs a class-conditional model"),
        ("erasediff", "vae", "method.name: 'erasediff' does not support model kind 'vae'"),
        ("constrained", "vae", "does not support model kind 'vae'"),
    ],
)
def test_incompatible_model_is_a_config_error(name, kind, message):
    with pytest.raises(ConfigError, match=message):
        check_compatible(get_method(MethodConfig(name=name)), tiny(kind))


def test_fdiv_anchor_class_must_exist(split):
    method = get_method(MethodConfig(name="fdiv", options={"anchor": "class", "anchor_class": 10}))
    with pytest.raises(ConfigError, match=r"method.options.anchor_class: 10 is not allowed"):
        method.setup(tiny("cond_ddpm"), split)


# -- f-divergences ---------------------------------------------------------------------------


def _quadrature(mu: float, f) -> float:
    """D_f(N(mu, 1) || N(0, 1)) = ∫ q·f(p/q) on a fine grid (float64)."""
    x = torch.linspace(-30, 30, 200_001, dtype=torch.float64)
    p = torch.exp(-0.5 * (x - mu) ** 2) / math.sqrt(2 * math.pi)
    q = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return float(torch.trapezoid(q * f(p / q), x))


@pytest.mark.parametrize("mu", [0.3, 1.0, 2.0])
def test_f_divergence_closed_forms_match_numerical_integration(mu):
    delta = torch.tensor(mu**2, dtype=torch.float64)
    cases = {
        "kl": lambda r: r * torch.log(r),
        "hellinger": lambda r: 1 - torch.sqrt(r),  # H² = 1 - ∫√(pq)
        "chi2": lambda r: (r - 1) ** 2,
    }
    for name, f in cases.items():
        closed = float(gaussian_f_divergence(delta, name, max_delta=100.0))
        assert closed == pytest.approx(_quadrature(mu, f), rel=1e-6, abs=1e-9), name
    for alpha in (-0.5, 0.0, 0.5):
        # Amari: (4/(1-α²))(1 - ∫ p^{(1-α)/2} q^{(1+α)/2})
        f = lambda r, a=alpha: 4 / (1 - a * a) * (1 - r ** ((1 - a) / 2))  # noqa: E731
        closed = float(gaussian_f_divergence(delta, "amari", alpha=alpha))
        assert closed == pytest.approx(_quadrature(mu, f), rel=1e-6), alpha


def test_amari_limits_and_chi2_clamp():
    delta = torch.tensor([0.0, 0.5, 3.0])
    kl = gaussian_f_divergence(delta, "kl")
    torch.testing.assert_close(gaussian_f_divergence(delta, "amari", alpha=1.0), kl)
    torch.testing.assert_close(
        gaussian_f_divergence(delta, "amari", alpha=-0.9999), kl, rtol=1e-3, atol=1e-6
    )
    torch.testing.assert_close(
        gaussian_f_divergence(delta, "amari", alpha=0.0),
        4 * gaussian_f_divergence(delta, "hellinger"),
    )
    big = torch.tensor(500.0, requires_grad=True)
    chi2 = gaussian_f_divergence(big, "chi2", max_delta=10.0)
    assert float(chi2) == pytest.approx(math.expm1(10.0), rel=1e-6)
    (g,) = torch.autograd.grad(chi2, big)
    assert torch.isfinite(g)


def test_fdiv_kl_term_is_half_the_mse_to_the_anchor(split):
    model = tiny("cond_ddpm")
    method = FDivergence(MethodConfig(name="fdiv", options={"divergence": "kl"}))
    method.setup(model, split)
    with torch.no_grad():  # move the model away from its anchor so the MSE is not ~0
        for p in model.unet.conv_out.parameters():
            p.add_(0.05)
    retain, forget = batches(split)
    terms = method.loss(model, retain, forget, 0.5, gen(4))
    # replay the draws: retain's t and ε, then forget's t and ε
    g = gen(4)
    model.sample_t(len(retain), g), torch.randn(retain.images.shape, generator=g)
    t = model.sample_t(len(forget), g)
    a_t = model.add_noise(forget.images, t, torch.randn(forget.images.shape, generator=g))
    with torch.no_grad():
        pred = model.eps(a_t, t, forget.labels)
        anchor = method.anchor.eps(a_t, t, torch.full_like(forget.labels, model.null_class))
    mse = (pred - anchor).pow(2).mean()
    assert float(mse) > 1e-4
    assert terms.forget.item() == pytest.approx(float(mse) / 2, rel=1e-5)


# -- VDU -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variance", ["constant", "fisher"])
def test_vdu_regulariser_is_zero_at_pretrained_weights_and_positive_after_a_step(variance, split):
    model = tiny("ddpm")
    method = VDU(MethodConfig(name="vdu", options={"variance": variance}))
    method.setup(model, split)
    assert float(method.regularizer(model)) == 0.0
    with torch.no_grad():
        p = model.unet.conv_in.weight
        p.add_(0.1 * torch.randn(p.shape, generator=gen(0)))
    reg = method.regularizer(model)
    assert float(reg) > 0
    diff = p.detach() - method.mu["unet.conv_in.weight"]
    expected = 0.5 * (method.precision["unet.conv_in.weight"] * diff.pow(2)).sum()
    assert float(reg) == pytest.approx(float(expected), rel=1e-5)
    if variance == "fisher":  # normalised to mean precision 1, not all equal
        prec = torch.cat([v.flatten() for v in method.precision.values()])
        assert float(prec.std()) > 0


def test_vdu_variance_from_checkpoints(tmp_path, split):
    model = tiny("vae")
    dirs = []
    for i, scale in enumerate((0.1, 0.3)):
        other = tiny("vae")
        with torch.no_grad():
            for p in other.parameters():
                p.add_(scale)
        dirs.append(str(save_model(other, tmp_path / f"ckpt{i}")))
    options = {"variance": "checkpoints", "checkpoints": dirs, "normalize": False}
    method = VDU(MethodConfig(name="vdu", options=options))
    method.setup(model, split)
    # σ² = mean of (0.1², 0.3²) = 0.05 for every parameter
    for prec in method.precision.values():
        torch.testing.assert_close(prec, torch.full_like(prec, 1 / 0.05), rtol=1e-4, atol=0)
    with pytest.raises(ConfigError, match="same architecture"):
        bad = VDU(MethodConfig(name="vdu", options={**options, "checkpoints": [dirs[0]]}))
        bad.setup(tiny("ddpm"), split)


def test_vdu_plasticity_is_bounded_below():
    method = VDU(MethodConfig(name="vdu", options={"plasticity": "log"}))
    losses = torch.tensor([1e-3, 0.5, 5.0, 50.0])
    p = method.plasticity(losses)
    assert bool((p >= 0).all()) and bool((p[1:] < p[:-1]).all())
    hinge = VDU().plasticity(torch.tensor([0.2, 2.0]))
    torch.testing.assert_close(hinge, torch.tensor([0.8, 0.0]))


# -- constrained, EraseDiff ------------------------------------------------------------------


def test_constrained_reports_violation_with_the_dual_sign(split):
    model = tiny("ddpm")
    retain, forget = batches(split)
    for target in ("forward_kl", "reverse_kl", "likelihood"):
        method = Constrained(MethodConfig(name="constrained", options={"target": target}))
        method.setup(model, split)
        terms = method.loss(model, retain, forget, 0.3, gen(0))
        # at the pretrained weights L_f = L_f^pre < 1.5·L_f^pre: violated, (1.5-1)/1.5
        assert terms.extras["violation"] == pytest.approx(1 / 3, rel=1e-5)


def test_constrained_targets_reduce_to_known_objectives(split):
    model = tiny("ddpm")
    retain, forget = batches(split)
    fwd = Constrained(MethodConfig(name="constrained", options={"target": "forward_kl"}))
    fwd.setup(model, split)
    q = split.k / split.n  # λ = k/n: the forward-KL target is the retain data (naive deletion)
    terms = fwd.loss(model, retain, forget, q, gen(0))
    assert terms.total.item() == pytest.approx(terms.retain.item(), rel=1e-5)
    rev = Constrained(MethodConfig(name="constrained", options={"target": "reverse_kl"}))
    rev.setup(model, split)
    # λ = 0 at the pretrained weights: ε* = ε_pre and D_r = 0
    assert float(rev.loss(model, retain, forget, 0.0, gen(0)).total) == pytest.approx(
        0.0, abs=1e-10
    )
    assert math.isfinite(float(rev.loss(model, retain, forget, 1.0, gen(0)).total))  # λ clipped


def test_erasediff_step_always_descends_the_forget_objective():
    method = EraseDiff(MethodConfig(name="erasediff", clip=0.0))
    g_r = [torch.tensor([1.0, 0.0]), None]
    g_f = [torch.tensor([-1.0, 1.0]), torch.tensor([0.5])]  # conflicts with g_r
    for lam in (0.0, 0.5, 1.0):
        d = method.combine_gradients(g_r, g_f, lam)
        along = float(sum((a * b).sum() for a, b in zip(d, g_f, strict=True) if a is not None))
        assert along >= lam * _norm(g_f) ** 2 - 1e-6
    # no conflict and η small: the retain gradient alone
    same = method.combine_gradients(g_r, [torch.tensor([2.0, 0.0]), None], 0.1)
    torch.testing.assert_close(same[0], g_r[0])
    clipped = EraseDiff(MethodConfig(name="erasediff", clip=0.1)).combine_gradients(g_r, g_f, 1.0)
    assert _norm(clipped) <= 0.1 + 1e-6
