"""Naive deletion: keep fine-tuning on the retain set only (the baseline of Alberti et al.,
ICLR 2025, reference code ``naive_del``)."""

from __future__ import annotations

import torch

from unlearn.config import PROMPT_KINDS
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import ALL_FAMILIES, per_sample_loss
from unlearn.types import Batch, LossTerms


class NaiveDeletion(UnlearningMethod):
    """Minimise the training loss on retain data; the forget set is only monitored.

    ``total = L_r``. ``forget`` is the forget batch's training loss (with its graph, so the
    unlearner can measure its gradient for agents and statistics); λ is not used.

    Args:
        cfg: the method config (no options).
    """

    name = "naive"
    uses_lambda = False
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
        return LossTerms(retain=l_r, forget=l_f, total=l_r)
