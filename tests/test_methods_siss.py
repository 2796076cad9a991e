"""SISS: importance weights (closed form, extremes, limits), unbiasedness against the
two-forward estimate, λ as a differentiable tensor, and the gradient form."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_model as tiny

from unlearn.config import MethodConfig
from unlearn.methods import SISS, SISSNoIS, importance_weights, weights_from_log_ratio
from unlearn.types import Batch

LAMS = (0.2, 0.5, 0.8)


def naive_weights(m, x, a, gamma, sigma, lam):
    """The textbook formula in float64 (overflows for large distances); γ, σ numbers or
    per-row ``(B, 1, 1, 1)``."""
    m, x, a = m.double(), x.double(), a.double()
    gamma = torch.as_tensor(gamma, dtype=torch.float64)
    two_s2 = 2 * torch.as_tensor(sigma, dtype=torch.float64).pow(2).reshape(-1)
    d_x = (m - gamma * x).pow(2).flatten(1).sum(1) / two_s2
    d_a = (m - gamma * a).pow(2).flatten(1).sum(1) / two_s2
    w_x = 1 / ((1 - lam) + lam * torch.exp(d_x - d_a))
    w_a = 1 / ((1 - lam) * torch.exp(d_a - d_x) + lam)
    return w_x, w_a


# -- importance weights ----------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_weights_match_closed_form_at_moderate_distances(lam):
    g = torch.Generator().manual_seed(0)
    x, a = torch.rand(64, 1, 4, 4, generator=g) - 0.5, torch.rand(64, 1, 4, 4, generator=g) - 0.5
    gamma, sigma = 0.6, 0.8
    eps = torch.randn(64, 1, 4, 4, generator=g)
    pick = torch.rand(64, generator=g) < 0.5
    m = torch.where(pick.view(-1, 1, 1, 1), gamma * a, gamma * x) + sigma * eps
    w_x, w_a = importance_weights(m, x, a, gamma, sigma, lam)
    ref_x, ref_a = naive_weights(m, x, a, gamma, sigma, lam)
    assert torch.isfinite(ref_x).all() and torch.isfinite(ref_a).all()  # really moderate
    torch.testing.assert_close(w_x.double(), ref_x, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w_a.double(), ref_a, rtol=1e-4, atol=1e-6)
    # q_λ = (1-λ)p_x + λp_a  ⇒  (1-λ)·w_x + λ·w_a = 1 for every m
    torch.testing.assert_close((1 - lam) * w_x + lam * w_a, torch.ones(64), rtol=1e-5, atol=1e-5)


def _far_apart(lam_requires_grad: float | None = None):
    """x = -1, a = +1, σ = 1e-3: |d_x - d_a| ≈ 3e7, exp overflows in any float type."""
    x, a = -torch.ones(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    gamma, sigma = 0.9, 1e-3
    eps = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    m = torch.cat([gamma * x[:1], gamma * a[1:]]) + sigma * eps  # row 0 from x, row 1 from a
    return m, x, a, gamma, sigma


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.75])
def test_weights_stay_finite_and_reach_their_limits_at_extreme_distances(lam):
    m, x, a, gamma, sigma = _far_apart()
    with torch.no_grad():
        ref_x, _ = naive_weights(m, x, a, gamma, sigma, lam)
        assert torch.isinf(torch.exp(torch.tensor(3e7, dtype=torch.float64)))  # naive overflows
    lam_t = torch.tensor(lam, requires_grad=True)
    w_x, w_a = importance_weights(m, x, a, gamma, sigma, lam_t)
    assert torch.isfinite(w_x).all() and torch.isfinite(w_a).all()
    # m from x, far from a: w_x → 1/(1-λ), w_a → 0;  m from a: w_x → 0, w_a → 1/λ
    torch.testing.assert_close(w_x, torch.tensor([1 / (1 - lam), 0.0]))
    torch.testing.assert_close(w_a, torch.tensor([0.0, 1 / lam]))
    (grad,) = torch.autograd.grad((w_x + w_a).sum(), lam_t)
    assert torch.isfinite(grad)
    # d/dλ of 1/(1-λ) at the x row, of 1/λ at the a row
    assert float(grad) == pytest.approx(1 / (1 - lam) ** 2 - 1 / lam**2, rel=1e-4)


def test_lambda_endpoints_give_unit_weights_where_naive_exp_gives_nan():
    m, x, a, gamma, sigma = _far_apart()
    w_x, _ = importance_weights(m, x, a, gamma, sigma, 0.0)
    _, w_a = importance_weights(m, x, a, gamma, sigma, 1.0)
    torch.testing.assert_close(w_x, torch.ones(2))
    torch.testing.assert_close(w_a, torch.ones(2))
    naive_x, _ = naive_weights(m, x, a, gamma, sigma, 0.0)
    assert torch.isnan(naive_x).any(), "the naive formula should fail here (0·inf)"


def test_weights_from_log_ratio_handles_infinite_deltas():
    delta = torch.tensor([-math.inf, -1e6, 0.0, 1e6, math.inf])
    w_x, w_a = weights_from_log_ratio(delta, 0.3)
    torch.testing.assert_close(w_x, torch.tensor([1 / 0.7, 1 / 0.7, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(w_a, torch.tensor([0.0, 0.0, 1.0, 1 / 0.3, 1 / 0.3]))


EDGE_LAMS = (1e-6, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-6)


def _image_scale_draws():
    """3x64x64 rows whose distances d = ||m - γx0||²/(2σ²) reach the thousands (about 6e3
    for the drawn component) while δ = d_x - d_a stays where float64's exp is finite: pairs
    that nearly coincide at every noise level, and independent pairs at high noise."""
    g = torch.Generator().manual_seed(0)
    shape = (12, 3, 64, 64)
    x = torch.rand(shape, generator=g) * 2 - 1
    near = x + 1e-3 * torch.randn(shape, generator=g)
    far = torch.rand(shape, generator=g) * 2 - 1
    close = torch.arange(12) < 6
    a = torch.where(close.view(-1, 1, 1, 1), near, far)
    # γ² + σ² = 1; near pairs from low to high noise, far pairs at σ close to 1
    gamma = torch.tensor([0.999, 0.99, 0.9, 0.7, 0.5, 0.2, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01])
    sigma = (1 - gamma**2).sqrt()
    gamma, sigma = gamma.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
    pick = (torch.arange(12) % 2 == 0).view(-1, 1, 1, 1)
    m = torch.where(pick, gamma * a, gamma * x) + sigma * torch.randn(shape, generator=g)
    return m, x, a, gamma, sigma


@pytest.mark.parametrize("lam", EDGE_LAMS)
def test_weights_match_float64_at_the_lambda_edges_at_image_scale(lam):
    m, x, a, gamma, sigma = _image_scale_draws()
    ref_x, ref_a = naive_weights(m, x, a, gamma.double(), sigma.double(), lam)
    assert torch.isfinite(ref_x).all() and torch.isfinite(ref_a).all()
    d_x = (m.double() - gamma * x.double()).pow(2).flatten(1).sum(1) / (2 * sigma.flatten() ** 2)
    assert float(d_x.max()) > 5e3  # distances at the 64x64 scale (the drawn one: ~6e3)
    w_x, w_a = importance_weights(m, x, a, gamma, sigma, lam)
    # relative 1e-5; below float32's range (~1e-38) the weights are 0
    torch.testing.assert_close(w_x.double(), ref_x, rtol=1e-5, atol=1e-30)
    torch.testing.assert_close(w_a.double(), ref_a, rtol=1e-5, atol=1e-30)
    # the check has power: λ held in float32 (as before) is more than 1e-5 off at the edges,
    # where w_a used 1 - fl32(1 - λ) for λ and w_x used 1 - fl32(λ) for 1 - λ
    f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
    if lam == 1e-6:
        old_a = naive_weights(m, x, a, gamma, sigma, 1 - f32(1 - f32(lam)))[1]
        assert float((old_a / ref_a - 1).abs().max()) > 1e-5
    if lam == 1 - 1e-6:
        old_x = naive_weights(m, x, a, gamma, sigma, f32(lam))[0]
        assert float((old_x / ref_x - 1).abs().max()) > 1e-5


def test_lambda_tensor_with_grad_keeps_its_value_and_gradient_at_the_edges():
    m, x, a, gamma, sigma = _image_scale_draws()
    for lam in (1e-6, 1 - 1e-6):
        lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
        w_x, w_a = importance_weights(m, x, a, gamma, sigma, lam_t)
        ref_x, ref_a = naive_weights(m, x, a, gamma.double(), sigma.double(), lam)
        torch.testing.assert_close(w_x.double(), ref_x, rtol=1e-5, atol=1e-30)
        torch.testing.assert_close(w_a.double(), ref_a, rtol=1e-5, atol=1e-30)
        (grad,) = torch.autograd.grad(w_a.sum() + w_x.sum(), lam_t)
        assert torch.isfinite(grad) and float(grad) != 0.0


def test_ess_is_zero_when_every_weight_of_a_batch_underflows():
    import unlearn.methods.siss as siss_mod

    # every m lies far from a: all w_a underflow to 0 (w_x stay 1/(1-λ))
    w = weights_from_log_ratio(torch.full((8,), -1e6), 0.3)
    assert float(w.w_a.max()) == 0.0
    assert siss_mod._ess(w.w_a) == 0.0
    assert siss_mod._ess(w.w_x) == pytest.approx(1.0)


# -- unbiasedness ----------------------------------------------------------------------------


def _estimates(method, model, split, lam, seeds, rows=1024):
    """Mean and standard error of (retain, forget, total) over independent draws."""
    idx = torch.arange(rows) % 4  # four fixed (x, a) pairs, many draws of t, ε and the mixture
    retain = Batch(split.retain.images[idx], split.retain.labels[idx])
    forget = Batch(split.forget.images[idx], split.forget.labels[idx])
    method.setup(model, split)
    vals = []
    with torch.no_grad():
        for s in seeds:
            t = method.loss(model, retain, forget, lam, torch.Generator().manual_seed(s))
            vals.append([float(t.retain), float(t.forget), float(t.total)])
    v = torch.tensor(vals, dtype=torch.float64)
    return v.mean(0), v.std(0) / math.sqrt(len(seeds))


@pytest.fixture(scope="module")
def reference(split):
    """The two-forward (no importance sampling) estimate, per model kind."""
    out = {}
    for kind in ("ddpm", "vae"):
        model = tiny(kind)
        out[kind] = (model, *_estimates(SISSNoIS(), model, split, 0.5, range(1000, 1012)))
    return out


def _z(kind, lam, split, reference):
    model, ref, ref_se = reference[kind]
    mean, se = _estimates(SISS(), model, split, lam, range(12))
    return (mean - ref) / torch.sqrt(se**2 + ref_se**2)


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.slow
def test_siss_matches_the_two_forward_estimate_in_expectation(lam, split, reference):
    # 12 x 1024 draws each; the relative standard error is about 1%. Fixed seeds make the
    # test deterministic; |z| < 4 is the tolerance for retain, forget and total alike.
    z = _z("ddpm", lam, split, reference)
    assert z.abs().max() < 4, f"SISS estimate deviates from no-IS by z={z.tolist()}"


def test_siss_vae_matches_the_two_forward_estimate_in_expectation(split, reference):
    z = _z("vae", 0.5, split, reference)
    assert z.abs().max() < 4, f"VAE SISS estimate deviates from no-IS by z={z.tolist()}"


def test_unbiasedness_check_detects_missing_weights(split, reference, monkeypatch):
    """The comparison above has power: dropping the importance weights is caught."""
    import unlearn.methods.siss as siss_mod

    def unit(m, x, a, gamma, sigma, lam):
        w = torch.ones(m.shape[0])
        return siss_mod.ImportanceWeights(w, w)

    monkeypatch.setattr(siss_mod, "importance_weights", unit)
    z = _z("ddpm", 0.5, split, reference)
    assert z.abs().max() > 10


# -- λ as a tensor, determinism, gradient form -------------------------------------------------


def _batches(split, n_retain=8, n_forget=8):
    return (
        Batch(split.retain.images[:n_retain], split.retain.labels[:n_retain]),
        Batch(split.forget.images[:n_forget], split.forget.labels[:n_forget]),
    )


@pytest.mark.parametrize("kind", ["ddpm", "cond_ddpm", "vpsde", "vae"])
@pytest.mark.parametrize("form", ["loss", "gradient"])
def test_lambda_tensor_receives_a_finite_gradient(kind, form, split):
    model = tiny(kind)
    method = SISS(MethodConfig(name="siss", form=form))
    method.setup(model, split)
    retain, forget = _batches(split)
    lam = torch.tensor(0.4, requires_grad=True)
    terms = method.loss(model, retain, forget, lam, torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(terms.total, lam)
    assert grad is not None and torch.isfinite(grad) and float(grad) != 0.0


def test_terms_are_weighted_errors_against_the_exact_eps_targets(split, monkeypatch):
    """With ε_θ ≡ 0 each term is mean w·||(m - γ·x0)/σ||², checked by replaying the draws."""
    model = tiny("ddpm")
    monkeypatch.setattr(model, "eps", lambda m, t, labels=None: torch.zeros_like(m))
    method = SISS()
    method.setup(model, split)
    retain, forget = _batches(split, 64, 64)
    lam = 0.5
    terms = method.loss(model, retain, forget, lam, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # same order as SISS.loss: mixture draw, t, ε
    pick = (torch.rand(64, generator=g) < lam).view(-1, 1, 1, 1)
    t = model.sample_t(64, g)
    eps = torch.randn(retain.images.shape, generator=g)
    nl = model.noise_level(t)
    x, a = retain.images, forget.images
    m = torch.where(pick, nl.gamma * a, nl.gamma * x) + nl.sigma * eps
    w_x, w_a = importance_weights(m, x, a, nl.gamma, nl.sigma, lam)
    for value, w, x0 in ((terms.retain, w_x, x), (terms.forget, w_a, a)):
        err = ((m - nl.gamma * x0) / nl.sigma).pow(2).flatten(1).mean(1)
        assert value.item() == pytest.approx(float((w * err).mean()), rel=1e-4)


def test_unequal_batch_sizes_are_paired_by_resampling(split):
    model = tiny("ddpm")
    method = SISS(MethodConfig(name="siss", options={"x_from": "all"}))
    method.setup(model, split)
    retain, forget = _batches(split, n_retain=8, n_forget=3)
    a = method.loss(model, retain, forget, 0.5, torch.Generator().manual_seed(3))
    b = method.loss(model, retain, forget, 0.5, torch.Generator().manual_seed(3))
    assert torch.isfinite(a.total) and torch.equal(a.total.detach(), b.total.detach())


def test_conditional_null_labels_use_one_forward(split):
    model = tiny("cond_ddpm")
    calls = []
    model.unet.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    retain, forget = _batches(split)
    for labels, expected in (("null", [8]), ("own", [16])):
        calls.clear()
        method = SISS(MethodConfig(name="siss", options={"labels": labels}))
        method.setup(model, split)
        method.loss(model, retain, forget, 0.5, torch.Generator().manual_seed(0))
        assert calls == expected


def test_loss_needs_setup(split):
    retain, forget = _batches(split)
    with pytest.raises(RuntimeError, match="setup"):
        SISS().loss(tiny("ddpm"), retain, forget, 0.5, torch.Generator())


def _grads(seed: int, n: int = 3) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=g) for _ in range(n)] + [None]


def _norm(grads) -> float:
    return math.sqrt(sum(float(x.pow(2).sum()) for x in grads if x is not None))


@pytest.mark.parametrize("cls", [SISS, SISSNoIS])
def test_gradient_form_is_norm_scaled_and_clipped(cls):
    g_x, g_a = _grads(0), _grads(1)
    unclipped = cls(MethodConfig(name=cls.name, form="gradient", clip=0.0))
    out = unclipped.combine_gradients(g_x, g_a, 0.5)
    assert out[-1] is None and len(out) == len(g_x)
    # default C = ||g_x||: g = g_x - ||g_x||·g_a/||g_a||
    coef = _norm(g_x) / _norm(g_a)
    for o, x, a in zip(out[:-1], g_x[:-1], g_a[:-1], strict=True):
        torch.testing.assert_close(o, x - coef * a)
    fixed = cls(MethodConfig(name=cls.name, form="gradient", clip=0.0, options={"C": 0.1}))
    out = fixed.combine_gradients(g_x, g_a, 0.5)
    diff = [o - x for o, x in zip(out[:-1], g_x[:-1], strict=True)]
    assert _norm(diff) == pytest.approx(0.1, rel=1e-5)
    clipped = cls(MethodConfig(name=cls.name, form="gradient", clip=0.5))
    out = clipped.combine_gradients(g_x, g_a, 0.5)
    assert _norm(out) <= 0.5 + 1e-6
    assert all(o is None or o.shape == x.shape for o, x in zip(out, g_x, strict=True))
