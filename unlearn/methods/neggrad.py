"""NegGrad: gradient ascent on the forget set, balanced by descent on the retain set
(the baseline of Alberti et al., ICLR 2025, reference code ``simple_neg_del``)."""

from __future__ import annotations

import torch

from unlearn.config import PROMPT_KINDS
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import ALL_FAMILIES, as_lam, per_sample_loss
from unlearn.types import Batch, LossTerms


class NegGrad(UnlearningMethod):
    """``total = (1-λ)·L_r - λ·L_f``: λ = 1 is pure ascent on the forget set (the reference
    code's ``simple_neg_del``), λ = 0 is naive deletion.

    The ascent term is unbounded below: the unlearner's divergence guard (non-finite loss
    → stop with the last good weights) and the step budget are what limit it. λ may be a
    tensor with gradient.

    Args:
        cfg: the method config (no options).
    """

    name = "neggrad"
    families = (*ALL_FAMILIES, *PROMPT_KINDS)

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        l_r = per_sample_loss(model, retain.images, retain.labels, generator).mean()
        l_f = per_sample_loss(model, forget.images, forget.labels, generator).mean()
        lam_t = as_lam(lam, l_r.device)
        return LossTerms(retain=l_r, forget=l_f, total=(1 - lam_t) * l_r - lam_t * l_f)
