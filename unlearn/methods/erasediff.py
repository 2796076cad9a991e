"""EraseDiff (Wu et al., "EraseDiff: Erasing Data Influence in Diffusion Models", 2024):
forget samples are trained towards a uniform-noise target, and the forget gradient enters
the update with a coefficient that resolves its conflict with the retain gradient."""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import MethodConfig
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import (
    DIFFUSION,
    as_lam,
    axpy,
    clip_to_norm,
    dot,
    flat_norm,
    model_labels,
    per_sample_loss,
    randn,
    sq_err,
)
from unlearn.methods.options import Opt
from unlearn.types import Batch, LossTerms


class EraseDiff(UnlearningMethod):
    """Bi-level unlearning in the gradient form of EraseDiff.

    Terms: ``retain = L_r`` (the usual ε target on retain data) and
    ``forget = mean ||ε_θ(a_t, t) - u||²`` with ``u ~ U[0, 1)`` per pixel: the model is
    taught to predict uniform noise, not the added Gaussian ε, on forget samples (reference
    code ``erasediff``: ``torch.rand_like``). ``total = L_r + λ·L_f`` is reported (and is
    what a variational agent learns from).

    Update (:meth:`combine_gradients`), with g_r, g_f the two gradients::

        φ = max(η - <g_r, g_f> / ||g_f||², 0),   η = eta · λ
        d = g_r + φ · g_f,  clipped to method.clip

    so that ``<d, g_f> >= η·||g_f||²``: the step decreases the forget objective at a rate set
    by λ even when the retain gradient opposes it (the gradient-conflict correction of
    EraseDiff's bi-level scheme; same formula as the SISS reference code's ``erasediff``).
    ``method.form`` is ignored: EraseDiff always combines gradients.

    Args:
        cfg: the method config: ``clip`` and option ``eta`` (η = eta·λ, default 1).
    """

    name = "erasediff"
    combine = "gradient"
    families = DIFFUSION
    forms = ("loss", "gradient")
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "eta": Opt(1.0, "forget descent rate: eta = option x lambda", lo=0.0, search=(0.25, 2.0)),
    }

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        self.clip = float(self.cfg.clip)

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        l_r = per_sample_loss(model, retain.images, retain.labels, generator).mean()
        a = forget.images
        t = model.sample_t(len(forget), generator)
        eps = randn(a.shape, generator, a)
        uniform = torch.rand(a.shape, generator=generator).to(a.device)
        pred = model.eps(model.add_noise(a, t, eps), t, model_labels(model, forget.labels))
        l_f = sq_err(pred, uniform).mean()
        total = l_r + as_lam(lam, l_r.device) * l_f
        return LossTerms(retain=l_r, forget=l_f, total=total)

    def combine_gradients(
        self, g_retain: list[torch.Tensor], g_forget: list[torch.Tensor], lam: float
    ) -> list[torch.Tensor]:
        eta = self.options["eta"] * float(lam)
        nf2 = float(flat_norm(g_forget)) ** 2
        phi = max(eta - float(dot(g_retain, g_forget)) / nf2, 0.0) if nf2 > 0 else 0.0
        return clip_to_norm(axpy(g_retain, phi, g_forget), self.clip)
