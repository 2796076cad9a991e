"""KL / likelihood-constrained unlearning (Khalafi, Ribeiro & Ding, "Unlearning in Diffusion
Models: A Unified Framework with KL Divergence and Likelihood Constraints").

Unlearning as a constrained problem: stay close to the pretrained model p_pre subject to a
separation constraint from the forget distribution p_f. λ is the Lagrange multiplier; a
dual agent (``agent.name: dual``) updates it from the violation this method reports.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import PROMPT_KINDS, MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import (
    DIFFUSION,
    as_lam,
    frozen_denoiser,
    model_labels,
    randn,
    sq_err,
)
from unlearn.methods.options import Opt
from unlearn.models import is_prompted
from unlearn.types import Batch, LossTerms

TARGETS = ("forward_kl", "reverse_kl", "likelihood")


class Constrained(UnlearningMethod):
    """The primal step of the Lagrangian for one of three constrained problems.

    Notation: ``L_f(θ) = ||ε_θ(a_t) - ε||²`` on the forget batch (the denoising loss, the
    ELBO proxy of ``-log p_θ(a)``), ``L_f^pre`` the same for the frozen pretrained copy on
    the same (t, ε), ``L_r`` the denoising loss on retain data and
    ``D_r = ||ε_θ(x_t) - ε_pre(x_t)||²`` the distance to the pretrained model on retain inputs.

    **Constraint and sign convention.** Every variant reports the same separation
    constraint ``L_f(θ) >= b`` with ``b = ratio · L_f^pre`` as
    ``extras["violation"] = (b - L_f(θ)) / b`` (dimensionless): **positive = violated** (the
    forget data is still too likely), so the dual agent raises λ; negative = satisfied with
    slack, λ falls towards 0 (``λ ← clip(λ + η·violation, 0, λ_max)``).

    Targets (``target``):

    - ``forward_kl`` (data unlearning): min KL(p_pre || p) s.t. KL(p_f || p) >= ε. Its
      optimum is ``p* ∝ p_pre - λ·p_f``; with p_pre ≈ the training data
      ``((n-k)·p_r + k·p_f)/n``, training towards it is
      ``total = ((n-k)/n · L_r + (k/n - λ)·L_f) / (1-λ)``, which is exactly naive deletion
      (``L_r``) at λ = k/n and pushes away from the forget data beyond it.
    - ``reverse_kl`` (concept unlearning): min KL(p || p_pre) s.t. KL(p || p_f) >= ε. Its
      optimum has score ``s* = (s_pre - λ·s_f)/(1-λ)`` (negative guidance); in ε units
      (s = -ε/σ) the target on forget inputs is ``ε* = (ε_pre(a_t) - λ·ε)/(1-λ)``, where the
      true noise ε is the unbiased denoising target of the forget score ε_f(a_t). Retain
      inputs keep ε_pre (the forget score is not available there):
      ``total = D_r + ||ε_θ(a_t) - ε*||²``.
    - ``likelihood``: min D_r s.t. ``L_f(θ) >= b`` (the forget data's likelihood under the
      model must drop below the pretrained one by the factor ``ratio``); the Lagrangian is
      ``total = D_r + λ·(b - L_f(θ))`` with b fixed per batch (no gradient through it).

    **Text-to-image** (``t2i``, concept erasure as in the seed's Stable Diffusion setting):
    a and x are VAE latents with their prompt ids, the pretrained copy is the UNet alone.
    There the forget distribution's score is the frozen model's own concept score
    ε_pre(a_t, c), so ``reverse_kl`` uses ``ε* = (ε_pre(a_t, ∅) - λ·ε_pre(a_t, c))/(1-λ)
    = ε_pre(a_t, ∅) - η·(ε_pre(a_t, c) - ε_pre(a_t, ∅))`` with η = λ/(1-λ): ESD's negative
    guidance, its strength set by the dual-ascent multiplier instead of a fixed η (one
    batched frozen forward of twice the forget batch). ``forward_kl`` and ``likelihood`` are
    the same formulas on the forget prompts' latents.

    λ is the Lagrange multiplier of the separation constraint: how hard forgetting is pushed
    against staying close to the pretrained model. λ is clipped to ``lam_max`` < 1 wherever it divides by 1-λ. ``LossTerms``: retain = L_r
    (forward_kl) or D_r, forget = L_f(θ), both with their graphs.

    Args:
        cfg: the method config; ``options``:

            - ``target``: ``forward_kl`` (default) | ``reverse_kl`` | ``likelihood``.
            - ``ratio``: b = ratio · L_f^pre (default 1.5).
            - ``lam_max``: upper clip of λ in the 1/(1-λ) factors (default 0.9).
    """

    name = "constrained"
    families = (*DIFFUSION, *PROMPT_KINDS)
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "target": Opt("forward_kl", "constrained problem", kind=str, choices=TARGETS),
        "ratio": Opt(1.5, "constraint: forget loss >= ratio x pretrained", lo=0.0, lo_open=True),
        "lam_max": Opt(0.9, "clip of lambda below 1", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    }

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        self.pretrained: torch.nn.Module | None = None
        self.n = self.k = 0

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        self.pretrained = frozen_denoiser(model)
        self.n, self.k = split.n, split.k

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        if self.pretrained is None:
            raise RuntimeError("call setup(model, split) before loss(): needs the pretrained copy")
        target = self.options["target"]
        pre = self.pretrained
        g = generator
        dev = retain.images.device
        lam_t = as_lam(lam, dev)
        lam_c = lam_t.clamp(max=self.options["lam_max"])

        # retain term: denoising loss (forward_kl) or distance to the pretrained prediction
        x = retain.images
        t_r = model.sample_t(len(retain), g)
        eps_r = randn(x.shape, g, x)
        x_t = model.add_noise(x, t_r, eps_r)
        y_r = model_labels(model, retain.labels)
        pred_r = model.eps(x_t, t_r, y_r)
        if target == "forward_kl":
            retain_term = sq_err(pred_r, eps_r).mean()
        else:
            with torch.no_grad():
                ref_r = pre.eps(x_t, t_r, y_r)
            retain_term = sq_err(pred_r, ref_r).mean()

        # forget term on a_t = γa + σε, with the pretrained loss on the same draw
        a = forget.images
        t_f = model.sample_t(len(forget), g)
        eps_f = randn(a.shape, g, a)
        a_t = model.add_noise(a, t_f, eps_f)
        y_f = model_labels(model, forget.labels)
        pred_f = model.eps(a_t, t_f, y_f)
        t2i_score = target == "reverse_kl" and is_prompted(model)
        with torch.no_grad():
            if t2i_score:  # (a_t, c) and (a_t, ∅) in one frozen forward
                null = torch.full_like(y_f, model.null_class)
                both = pre.eps(torch.cat([a_t, a_t]), torch.cat([t_f, t_f]), torch.cat([y_f, null]))
                pre_f, pre_null = both.chunk(2)
            else:
                pre_f = pre.eps(a_t, t_f, y_f)
            bound = self.options["ratio"] * sq_err(pre_f, eps_f).mean()
        l_f = sq_err(pred_f, eps_f).mean()

        if target == "forward_kl":
            q = self.k / self.n
            total = ((1 - q) * retain_term + (q - lam_c) * l_f) / (1 - lam_c)
        elif t2i_score:
            eps_star = (pre_null.float() - lam_c * pre_f.float()) / (1 - lam_c)
            total = retain_term + sq_err(pred_f, eps_star).mean()
        elif target == "reverse_kl":
            eps_star = (pre_f.float() - lam_c * eps_f) / (1 - lam_c)
            total = retain_term + sq_err(pred_f, eps_star).mean()
        else:
            total = retain_term + lam_t * (bound - l_f)
        violation = float((bound - l_f.detach()) / bound.clamp_min(1e-12))
        return LossTerms(
            retain=retain_term, forget=l_f, total=total, extras={"violation": violation}
        )
