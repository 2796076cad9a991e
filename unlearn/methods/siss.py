"""SISS: Subtracted Importance-Sampled Scores (Alberti et al., "Data Unlearning in Diffusion
Models", ICLR 2025).

The retain objective ``n/(n-k)·L_X − k/(n-k)·L_A`` needs the denoising loss of a retain
sample x and of a forget sample a. SISS evaluates both with ONE network forward: it draws
the noisy input m from the defensive mixture

    q_λ(m) = (1-λ)·N(m; γ·x, σ²I) + λ·N(m; γ·a, σ²I)

(shared t and ε for the pair) and re-weights each term by the density ratio of its own
Gaussian to the mixture, so both estimates are unbiased for every λ ∈ (0, 1); λ only changes
their variance (and, in the gradient form, the effective balance).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import torch

from unlearn.config import PROMPT_KINDS, MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.base import FusedStep, UnlearningMethod
from unlearn.methods.common import (
    ALL_FAMILIES,
    axpy,
    clip_to_norm,
    flat_norm,
    is_vae,
    lam_value,
    model_labels,
    rand,
    randn,
    resample,
    sq_err,
)
from unlearn.methods.options import Opt
from unlearn.types import Batch, LossTerms

# Weights are capped at 1e30: only reachable for draws the mixture cannot produce (λ exactly
# 0 or 1), where the exact weight is unbounded; |δ| is clamped to 1e30 so that ±inf
# distances never meet a zero mixture weight as 0·inf
_LOG_W_MAX = math.log(1e30)
_DELTA_MAX = 1e30


class ImportanceWeights(NamedTuple):
    """Per-sample weights of the x and the a term (unpacks as ``w_x, w_a``)."""

    w_x: torch.Tensor
    w_a: torch.Tensor


def _safe_log(p: torch.Tensor) -> torch.Tensor:
    """log p with log 0 = -inf and a zero (not NaN) gradient at p = 0."""
    pos = p > 0
    return torch.where(pos, torch.log(torch.where(pos, p, torch.ones_like(p))), -math.inf)


def _log_lam(lam: float | torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log λ, log(1-λ))`` in float64, keeping λ's graph when it is a tensor.

    ``log1p(-λ)`` is formed from λ itself: 1-λ in float32 is 1.3% off at λ = 1-1e-6, and
    1 - fl32(1-λ) stands in for λ at λ = 1e-6 (issue 11.7); a Python float keeps all of
    its 53 bits. Both logs are -inf, with a zero gradient, at the endpoint they vanish at.
    """
    if isinstance(lam, torch.Tensor):
        lam = lam.to(device=device, dtype=torch.float64).reshape(())
    else:
        lam = torch.tensor(float(lam), dtype=torch.float64, device=device)
    below = lam < 1
    log_1m = torch.where(
        below, torch.log1p(-torch.where(below, lam, torch.zeros_like(lam))), -math.inf
    )
    return _safe_log(lam), log_1m


def weights_from_log_ratio(delta: torch.Tensor, lam: float | torch.Tensor) -> ImportanceWeights:
    """Defensive-mixture weights from ``δ = log p_a(m) - log p_x(m)``.

    ``w_x = p_x/q_λ = 1/((1-λ) + λ·e^δ)`` and ``w_a = p_a/q_λ = 1/((1-λ)·e^{-δ} + λ)``
    (SISS, Alberti et al. 2025, defensive mixture), both computed in log space in float64
    from log λ and log1p(-λ), returned in float32 (weights below ~1e-38 underflow to 0).
    """
    delta = delta.double().clamp(-_DELTA_MAX, _DELTA_MAX)
    log_lam, log_1m = _log_lam(lam, delta.device)
    log_w_x = -torch.logaddexp(log_1m, log_lam + delta)
    log_w_a = -torch.logaddexp(log_1m - delta, log_lam)
    return ImportanceWeights(
        torch.exp(log_w_x.clamp(max=_LOG_W_MAX)).float(),
        torch.exp(log_w_a.clamp(max=_LOG_W_MAX)).float(),
    )


def importance_weights(
    m: torch.Tensor,
    x0_x: torch.Tensor,
    x0_a: torch.Tensor,
    gamma: torch.Tensor | float,
    sigma: torch.Tensor | float,
    lam: float | torch.Tensor,
) -> ImportanceWeights:
    """SISS importance weights of the noisy inputs ``m`` (one per row).

    Args:
        m: noisy inputs drawn from the mixture, shape ``(B, ...)``.
        x0_x: clean retain samples x, same shape.
        x0_a: clean forget samples a, same shape.
        gamma: signal scale γ_t, a number or broadcastable to ``m`` (e.g. ``(B, 1, 1, 1)``).
        sigma: noise scale σ_t, likewise.
        lam: mixture weight λ ∈ [0, 1] of the forget component (float or tensor with grad).

    Returns:
        ``ImportanceWeights(w_x, w_a)`` of shape ``(B,)`` with
        ``w_x = 1/((1-λ) + λ·exp(d_x - d_a))``, ``w_a = 1/((1-λ)·exp(d_a - d_x) + λ)`` and
        ``d = ||m - γ·x0||² / (2σ²)``; finite for any distance, δ and the weights formed
        in float64 (returned in float32).
    """
    # float64: δ sums one term per pixel, and at 64x64x3 a float32 sum is off by more than
    # the 1e-5 relative accuracy the weights are held to
    m, x, a = m.double(), x0_x.double(), x0_a.double()
    gamma = torch.as_tensor(gamma, device=m.device).double()
    sigma = torch.as_tensor(sigma, device=m.device).double()
    # d_x - d_a = (||m-γx||² - ||m-γa||²)/(2σ²) = ½ Σ (u-v)(u+v) with u, v the two ε-targets;
    # u - v = γ(a-x)/σ is formed directly, so large, nearly equal distances do not cancel
    diff = gamma * (a - x) / sigma
    both = (2 * m - gamma * (x + a)) / sigma
    delta = 0.5 * (diff * both).flatten(1).sum(1)
    return weights_from_log_ratio(delta, lam)


def siss_coefficients(n: int, k: int, scale: float) -> tuple[float, float]:
    """``(n/(n-k), (1+s)·k/(n-k))``: the loss form's factors of L_x and L_a."""
    if not 0 < k < n:
        raise RuntimeError("call setup(model, split) before loss(): SISS needs n and k")
    return n / (n - k), (1 + scale) * k / (n - k)


def siss_forget_coefficient(norm_x: float, norm_a: float, C: float | None, scale: float) -> float:
    """The gradient form's factor of g_a, ``-(1+s)·c/||g_a||`` with ``c = C`` or ``||g_x||``
    (0 when ``||g_a||`` is 0 or not finite).

    The reference implementation (claserken/SISS, ``delete_celeb.py``) sets the NegGrad
    term's norm to ``scaling_norm`` and then clips the sum to norm 1; ``C = None`` scales it
    to ``||g_x||`` instead, so the forget step is as long as the retain step.
    """
    c = norm_x if C is None else float(C)
    return -(1 + scale) * c / norm_a if norm_a > 0 and math.isfinite(norm_a) else 0.0


def _ess(w: torch.Tensor) -> float:
    """Effective sample size fraction (Σw)²/(B·Σw²) ∈ [0, 1]: 1 = no weight degeneracy,
    0 = every weight of the batch underflowed."""
    w = w.detach().double()
    den = float(w.pow(2).sum()) * w.numel()
    # every weight underflowed to 0: no sample carries weight, report 0 rather than 0/0
    return float(w.sum() ** 2) / den if den > 0 else 0.0


def _gauss_logpdf(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(logvar))) per sample, without the 2π constant."""
    z, mean, logvar = z.double(), mean.double(), logvar.double()
    return -0.5 * ((z - mean).pow(2) * torch.exp(-logvar) + logvar).flatten(1).sum(1)


# -- λ-gradient estimators for learned-λ agents ---------------------------------------------
# The mixture component of each pair is a Bernoulli(λ) draw that autograd cannot see, so the
# gradient of the loss through the weights alone (the pathwise term) is a biased estimate of
# d E[loss] / dλ: at λ = 0.5 on a fixed ε-predictor ∂L_x/∂λ averages +0.23 and ∂L_a/∂λ
# −0.61 while the exact derivative is 0 (both estimates are unbiased for every λ). The
# functions below add the missing score-function term. Chosen over the exact expectation
# over the component (a second UNet forward per pair: about 2x the step) and over a
# continuous relaxation (biased, and it would change the model's own loss): the score term
# reuses the step's forward and costs O(batch) arithmetic.


class MixtureDraw(NamedTuple):
    """One SISS step's draws, as λ-gradient estimators need them (``LossTerms.draw``).

    Per pair i the SISS estimate of the loss form is
    ``f_i(λ) = c_x·(w_x,i(λ)·e_x,i + k_x,i) − c_a·(w_a,i(λ)·e_a,i + k_a,i)``; its batch mean is
    ``LossTerms.total``. The errors are detached (the estimators train λ, not the model).
    """

    weights: ImportanceWeights  # w_x, w_a: differentiable in ``lam``
    err_x: torch.Tensor  # per-pair error the x weight multiplies (detached)
    err_a: torch.Tensor
    const_x: torch.Tensor  # per-pair unweighted part (the VAE's KL; 0 for diffusion)
    const_a: torch.Tensor
    pick_a: torch.Tensor  # bool: the pair's noisy input came from the forget component
    lam: torch.Tensor  # the λ the draw used, with its graph
    c_x: float
    c_a: float


def pair_estimates(draw: MixtureDraw) -> torch.Tensor:
    """``f_i(λ)``, one per pair, differentiable in λ through the weights only."""
    w = draw.weights
    f_x = w.w_x * draw.err_x + draw.const_x
    f_a = w.w_a * draw.err_a + draw.const_a
    return draw.c_x * f_x - draw.c_a * f_a


def _loo_baseline(v: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Leave-one-out control variate ``c_i = Σ_{j≠i} v_j·s_j² / Σ_{j≠i} s_j²``.

    ``E[v·s²] / E[s²]`` is the variance-optimal constant baseline of a score-function
    estimator; estimated without pair i it is independent of i's draw, so the estimator
    stays unbiased. With one pair there is nothing to leave out: the baseline is 0.
    """
    if v.numel() < 2:
        return torch.zeros_like(v)
    num = (v * s2).sum() - v * s2
    den = (s2.sum() - s2).clamp_min(1e-30)
    return num / den


def lambda_surrogate(
    draw: MixtureDraw, objective: str = "siss", score: bool = True
) -> torch.Tensor:
    """A scalar whose gradient in λ is an estimate of ``d J(λ) / dλ``.

    ``J = E[f]`` (``siss``: the loss form itself) or ``J = E[f²]`` (``variance``: the second
    moment of the per-pair estimate; E[f] does not depend on λ, so this is its variance up
    to a constant). With ``score`` the estimate is unbiased::

        ∂v_i/∂λ + (v_i − c_i)·∂ log p(b_i | λ)/∂λ,    v_i = f_i or f_i²,
        ∂ log p(b | λ)/∂λ = b/λ − (1−b)/(1−λ),

    with the leave-one-out control variate ``c_i`` (:func:`_loo_baseline`); without it only
    the pathwise term ``∂v_i/∂λ`` remains (biased: it ignores that the draw depends on λ).
    The value is the batch mean of v; only its gradient in λ is meant to be used (the errors
    are detached, so it sends nothing to the model).
    """
    if objective not in ("siss", "variance"):
        raise ValueError(f"objective {objective!r}: one of siss, variance")
    f = pair_estimates(draw)
    v = f if objective == "siss" else f.pow(2)
    return v.mean() + score_term(draw, v) if score else v.mean()


def score_term(draw: MixtureDraw, v: torch.Tensor) -> torch.Tensor:
    """The score-function part of :func:`lambda_surrogate` for per-pair values ``v``: 0 in
    value, its λ-gradient ``mean (v_i − c_i)·∂ log p(b_i | λ)/∂λ``."""
    lam = draw.lam.clamp(1e-6, 1 - 1e-6)
    b = draw.pick_a
    log_p = torch.where(b, torch.log(lam), torch.log1p(-lam))
    s = torch.where(b, 1 / lam, -1 / (1 - lam)).detach()
    vd = v.detach()
    adv = vd - _loo_baseline(vd, s.pow(2))
    # (log p - log p.detach()) is 0 in value and has the score as its gradient
    return (adv * (log_p - log_p.detach())).mean()


class SISS(UnlearningMethod):
    """SISS with one forward per (retain, forget) pair (Alberti et al., ICLR 2025).

    Per step: x from the retain batch, a from the forget batch (resampled with the step's
    generator to the retain batch size when they differ), one shared t and ε per pair, and a
    Bernoulli(λ) draw per pair choosing m = noisy a (prob. λ) or noisy x. With
    ``w = importance_weights(m, x, a, γ, σ, λ)``::

        L_x = mean w_x·||ε_θ(m, t) - (m - γx)/σ||²     (pixel mean)
        L_a = mean w_a·||ε_θ(m, t) - (m - γa)/σ||²

    ``LossTerms``: retain = L_x, forget = L_a (both unbiased estimates of plain denoising
    losses), total = the loss form ``n/(n-k)·L_x - (1+s)·k/(n-k)·L_a``. The paper draws x from
    the whole training set X; with ``x_from: retain`` (default) x comes from X \\ A, so the
    loss form equals ``L_{X\\A} + k/(n-k)·(L_{X\\A} - (1+s)·L_A)`` in expectation (an extra
    push away from A); ``x_from: all`` swaps each x for a forget sample with probability k/n,
    which makes x ~ X as in the paper. λ may be a tensor with gradient: the weights are
    differentiable in λ (the Bernoulli draw is not; ``LossTerms.draw`` then carries a
    :class:`MixtureDraw` for the unbiased estimator :func:`lambda_surrogate`).

    VP-SDE: the same estimator with continuous t (``model.sample_t`` / ``noise_level``).

    Text-to-image (``t2i``, memorised prompts): the forget set is (caption, image) pairs —
    ``forget.caption`` and the training images ``forget.caption_images`` it reproduces — as
    VAE latents labelled with the caption's prompt id; x are retain latents under their own
    prompts. With ``labels: own`` ε_θ(m) is evaluated under x's prompt for L_x and under the
    caption for L_a (one UNet call of twice the batch), so the caption stops reproducing its
    image while the retain prompts keep theirs.

    λ weighs nothing in expectation: it is the defensive-mixture weight (how often the
    noisy forget sample is drawn), so it sets the estimate's variance and, through the
    gradient form's norm scaling and clipping, the effective forget strength; the
    superfactor s is the direct strength.

    VAE (``ConvVAE``): the mixture is over the two encoder posteriors,
    ``q_λ(z) = (1-λ)·q(z|x) + λ·q(z|a)``; z is drawn from it by reparameterisation (shared
    standard-normal noise, Bernoulli(λ) component), decoded once, and the reconstruction
    terms ``-log p(x|z)``, ``-log p(a|z)`` are weighted by ``w = q(z|·)/q_λ(z)`` from
    :func:`weights_from_log_ratio` with ``δ = log q(z|a) - log q(z|x)``. The KL terms are
    exact (closed form for Gaussians) and need no weighting. L_x, L_a are the resulting
    negative ELBOs per dimension; the estimate and its reparameterised gradient are unbiased
    because the draw's distribution does not depend on the weights.

    Gradient form (``method.form: gradient``): the unlearner back-propagates retain and
    forget separately and :meth:`combine_gradients` returns
    ``g_x - (1+s)·C·g_a/||g_a||`` clipped to ``method.clip`` (the reference code's
    norm-scaled NegGrad term; the n/(n-k) factors are absorbed in C).

    Args:
        cfg: the method config: ``scale`` (s), ``form`` (``loss`` | ``gradient``), ``clip``
            (gradient form) and ``options``:

            - ``C``: gradient form: length of the forget step; null (default) = ``||g_x||``.
            - ``x_from``: ``retain`` (default) or ``all`` (x ~ X as in the paper, see above).
            - ``norm_every``: gradient form: K ≥ 1 (default 1, the exact form). Every K-th
              step back-propagates L_x and L_a separately and measures ``||g_x||``,
              ``||g_a||``; the steps in between reuse that coefficient and take ONE backward
              of ``L_x - (1+s)·c/||g_a||·L_a``, clipped the same way.
            - ``labels``: class-conditional models only: ``own`` (default) evaluates ε_θ(m)
              under x's label for L_x and a's label for L_a (one batched call of twice the
              size, exact); ``null`` uses the null class for both (one forward, unlearns the
              unconditional model only).
    """

    name = "siss"
    families = (*ALL_FAMILIES, *PROMPT_KINDS)
    forms = ("loss", "gradient")
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "C": Opt(
            None,
            "gradient form: forget step length; null = ||g_x||",
            lo=0.0,
            lo_open=True,
            optional=True,
        ),
        "x_from": Opt("retain", "where x is drawn from", kind=str, choices=("retain", "all")),
        "labels": Opt("own", "conditioning of the two terms", kind=str, choices=("own", "null")),
        "norm_every": Opt(1, "gradient form: measure the two norms every K steps", kind=int, lo=1),
    }

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        self.combine = self.cfg.form
        self.scale = float(self.cfg.scale)
        self.clip = float(self.cfg.clip)
        self.n = self.k = 0
        self._coef: float | None = None  # the last measured forget coefficient (norm_every)

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        self.n, self.k = split.n, split.k
        self._coef = None

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        c_x, c_a = siss_coefficients(self.n, self.k, self.scale)
        dev = retain.images.device
        size = len(retain)
        a = resample(forget, size, generator)
        x = retain
        if self.options["x_from"] == "all":
            idx = torch.randint(0, len(forget), (size,), generator=generator).to(dev)
            swap = rand(size, generator, dev) < self.k / self.n
            x = Batch(
                torch.where(swap.view(-1, 1, 1, 1), forget.images[idx], x.images),
                torch.where(swap, forget.labels[idx], x.labels),
            )
        # λ as given: the weights take it in float64 (a float32 copy loses the edges)
        pick_a = rand(size, generator, dev) < min(1.0, max(0.0, lam_value(lam)))
        if is_vae(model):
            l_x, l_a, w, parts, delta = self._vae_terms(model, x, a, pick_a, lam, generator)
        else:
            l_x, l_a, w, parts = self._diffusion_terms(model, x, a, pick_a, lam, generator)
            delta = None  # the weights depend on the data and λ only
        total = c_x * l_x - c_a * l_a
        extras = {"siss/ess_x": _ess(w.w_x), "siss/ess_a": _ess(w.w_a)}
        draw = None
        # a learned λ: keep what its gradient estimators need, differentiable in λ alone (the
        # VAE's weights also depend on the encoder: re-formed from the detached log-ratio)
        if isinstance(lam, torch.Tensor) and lam.requires_grad:
            w_lam = w if delta is None else weights_from_log_ratio(delta.detach(), lam)
            draw = MixtureDraw(w_lam, *(p.detach() for p in parts), pick_a, lam, c_x, c_a)
        return LossTerms(retain=l_x, forget=l_a, total=total, extras=extras, draw=draw)

    def _diffusion_terms(self, model, x: Batch, a: Batch, pick_a, lam_t, g):
        size = len(x)
        t = model.sample_t(size, g)
        eps = randn(x.images.shape, g, x.images)
        nl = model.noise_level(t)
        gamma, sigma = nl.gamma, nl.sigma
        sel = pick_a.view(-1, 1, 1, 1)
        x0, a0 = x.images.float(), a.images.float()
        m = torch.where(sel, gamma * a0 + sigma * eps, gamma * x0 + sigma * eps)
        w = importance_weights(m, x0, a0, gamma, sigma, lam_t)
        # ε-targets (m - γ·x0)/σ formed without dividing a difference of large numbers by a
        # tiny σ: the drawn component's target is ε itself
        shift = gamma * (a0 - x0) / sigma
        target_x = eps + sel * shift
        target_a = eps - (~sel) * shift
        if model.conditional and self.options["labels"] == "own":
            labels = torch.cat([model_labels(model, x.labels), model_labels(model, a.labels)])
            pred_x, pred_a = model.eps(torch.cat([m, m]), torch.cat([t, t]), labels).chunk(2)
        else:
            pred_x = pred_a = model.eps(m, t, None)
        e_x, e_a = sq_err(pred_x, target_x), sq_err(pred_a, target_a)
        zero = torch.zeros_like(e_x)
        return (w.w_x * e_x).mean(), (w.w_a * e_a).mean(), w, (e_x, e_a, zero, zero)

    def _vae_terms(self, model, x: Batch, a: Batch, pick_a, lam_t, g):
        x0, a0 = x.images, a.images
        mu_x, lv_x = model.encode(x0)
        mu_a, lv_a = model.encode(a0)
        e = randn(mu_x.shape, g, x0)
        sel = pick_a.view(-1, 1, 1, 1)
        z = torch.where(sel, mu_a + torch.exp(0.5 * lv_a) * e, mu_x + torch.exp(0.5 * lv_x) * e)
        z64 = z.double()  # converted once for both densities
        delta = _gauss_logpdf(z64, mu_a, lv_a) - _gauss_logpdf(z64, mu_x, lv_x)
        w = weights_from_log_ratio(delta, lam_t)
        recon = model.decode(z).float()
        inv_2var = 0.5 * math.exp(-model.decoder_logvar)
        dims = x0[0].numel()

        def parts(target, mu, lv):  # per sample: reconstruction (weighted) and KL, per dim
            rec = (recon - target.float()).pow(2).flatten(1).sum(1) * inv_2var
            kl = 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).float().flatten(1).sum(1)
            return rec / dims, kl / dims

        (r_x, k_x), (r_a, k_a) = parts(x0, mu_x, lv_x), parts(a0, mu_a, lv_a)
        l_x, l_a = (w.w_x * r_x + k_x).mean(), (w.w_a * r_a + k_a).mean()
        return l_x, l_a, w, (r_x, r_a, k_x, k_a), delta

    def combine_gradients(
        self, g_retain: list[torch.Tensor], g_forget: list[torch.Tensor], lam: float
    ) -> list[torch.Tensor]:
        """The reference code's gradient form ``g_x - (1+s)·C·g_a/||g_a||``, clipped; the
        coefficient is kept for the steps :meth:`fused_step` takes with one backward."""
        nx, na = flat_norm(g_retain), flat_norm(g_forget)
        self._coef = siss_forget_coefficient(nx, na, self.options["C"], self.scale)
        return clip_to_norm(axpy(g_retain, self._coef, g_forget), self.clip)

    def fused_step(self, step: int) -> FusedStep | None:
        """``norm_every = K > 1``: between the steps that measure the norms (every K-th, two
        backwards), the direction is ``∇(L_x + coef·L_a)`` with the last measured
        coefficient, one backward, then the same clipping (issue 11.8)."""
        every = self.options.get("norm_every", 1)
        if self.combine != "gradient" or every == 1 or step % every == 0 or self._coef is None:
            return None
        return FusedStep(1.0, self._coef, self.clip)
