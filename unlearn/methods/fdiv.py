"""f-divergence unlearning (Novello et al.) for the class-conditional DDPM and for
text-to-image pipelines (the seed's native setting: the anchor is a replacement concept).

The usual concept-unlearning loss ``||ε_θ(x_t, c) - ε_anchor(x_t, c')||²`` is, up to a
factor, the KL divergence between two equal-variance Gaussians. Replacing it by other
f-divergences with closed forms for equal-variance Gaussians changes how hard large and
small discrepancies are pushed.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import PROMPT_KINDS, ConfigError, MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import (
    as_lam,
    frozen_denoiser,
    kind_name,
    model_labels,
    per_sample_loss,
    randn,
)
from unlearn.methods.options import PREFIX, Opt
from unlearn.models import is_prompted
from unlearn.types import Batch, LossTerms

DIVERGENCES = ("kl", "hellinger", "chi2", "amari")
ANCHORS = ("auto", "null", "class", "prompt")


def gaussian_f_divergence(
    delta: torch.Tensor, divergence: str, alpha: float = 0.5, max_delta: float = 10.0
) -> torch.Tensor:
    """Closed-form f-divergence between N(μ1, σ²I) and N(μ2, σ²I) from Δ = ||μ1-μ2||²/σ².

    Args:
        delta: Δ ≥ 0 (any shape; elementwise).
        divergence: ``kl`` → Δ/2; ``hellinger`` (squared Hellinger, H² = 1 - BC) →
            1 - exp(-Δ/8); ``chi2`` (Pearson) → exp(Δ) - 1, with Δ clamped to ``max_delta``
            first because it grows exponentially (its gradient would overflow); ``amari``
            (Amari α-divergence, (4/(1-α²))·(1 - ∫ p^{(1-α)/2} q^{(1+α)/2})) →
            (4/(1-α²))·(1 - exp(-(1-α²)·Δ/8)), which is 4·H² at α = 0 and tends to KL = Δ/2
            as α → ±1 (used exactly there).
        alpha: α of the Amari family, in [-1, 1].
        max_delta: the clamp of Δ for ``chi2``.
    """
    if divergence == "kl":
        return delta / 2
    if divergence == "hellinger":
        return -torch.expm1(-delta / 8)
    if divergence == "chi2":
        return torch.expm1(delta.clamp(max=max_delta))
    if divergence == "amari":
        c = 1.0 - alpha * alpha
        if c < 1e-6:
            return delta / 2
        return -4.0 / c * torch.expm1(-c * delta / 8)
    raise ValueError(f"unknown divergence {divergence!r}; expected one of {DIVERGENCES}")


class FDivergence(UnlearningMethod):
    """Pull the model's prediction for a forget class towards a frozen anchor's prediction.

    For a forget sample a with label c, noisy ``a_t = γa + σε``::

        Δ = ||ε_θ(a_t, t, c) - ε_anchor(a_t, t, c')||² / D       (D = pixels; pixel mean)
        forget = mean f(Δ),  retain = denoising loss on retain data,
        total  = (1-λ)·retain + λ·forget

    ε_anchor is a frozen copy of the model taken at :meth:`setup` and c' is the null class
    (``anchor: null``) or ``anchor_class`` (``anchor: class``) of a class-conditional DDPM, or
    on ``t2i`` the anchor concept ``forget.anchor`` (``anchor: prompt``, e.g. "a handwritten
    digit": the concept's prompts are pulled onto what the original makes for the anchor) or
    the empty prompt (``anchor: null``). ``anchor: auto`` (default) is ``null`` on a DDPM and
    ``prompt`` on t2i (the empty prompt when ``forget.anchor`` is not set). On t2i only the
    UNet is copied; c is the forget batch's prompt id, the retain term the denoising loss on
    retain latents under their own prompts.

    λ weighs the anchor term against the retain term: λ = 1 is the seed's objective (the
    anchor regression alone), λ = 0 fine-tunes on retain data only. **Precise statement:** the two
    ε-predictions are the means of Gaussians N(ε_θ, D·I) and N(ε_anchor, D·I) in ε-space, so
    Δ = ||μ1-μ2||²/σ² with σ² = D is the per-pixel MSE; then KL = Δ/2 = MSE/2 exactly and the
    other divergences are the exact closed forms of :func:`gaussian_f_divergence` for these
    two Gaussians. Outlier samples (label -1) use the null class for the model.

    Args:
        cfg: the method config; ``options``:

            - ``divergence``: ``kl`` (default) | ``hellinger`` | ``chi2`` | ``amari``.
            - ``alpha``: α of ``amari``, in [-1, 1] (default 0.5).
            - ``anchor``: ``auto`` (default) | ``null`` | ``class`` (DDPM) | ``prompt`` (t2i).
            - ``anchor_class``: the anchor label for ``anchor: class`` (default 0); must be
              a class of the model.
            - ``max_delta``: clamp of Δ for ``chi2`` (default 10: χ² ≤ e^10 - 1).
    """

    name = "fdiv"
    families = ("cond_ddpm", *PROMPT_KINDS)
    needs_conditional = True
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "divergence": Opt("kl", "f-divergence", kind=str, choices=DIVERGENCES, search=DIVERGENCES),
        "alpha": Opt(0.5, "alpha of the Amari family", lo=-1.0, hi=1.0),
        "anchor": Opt("auto", "anchor", kind=str, choices=ANCHORS),
        "anchor_class": Opt(0, "anchor label for anchor: class", kind=int, lo=0),
        "max_delta": Opt(10.0, "chi2: clamp of Delta", lo=0.0, lo_open=True),
    }

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        self.anchor = None
        self.anchor_label = 0

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        self.anchor_label = self._anchor_label(model)
        self.anchor = frozen_denoiser(model)

    def _anchor_label(self, model: torch.nn.Module) -> int:
        mode, t2i = self.options["anchor"], is_prompted(model)
        if mode == "auto":
            mode = "prompt" if t2i else "null"
        allowed = "auto, null, prompt" if t2i else "auto, null, class"
        if mode == ("class" if t2i else "prompt"):
            raise ConfigError(
                f"{PREFIX}.anchor: {mode!r} is not allowed for model kind {kind_name(model)!r}; "
                f"expected one of {allowed}"
            )
        if mode == "null":
            return int(model.null_class)
        if mode == "prompt":
            return int(model.anchor_id)
        c = self.options["anchor_class"]
        if not c < model.num_classes:
            raise ConfigError(
                f"{PREFIX}.anchor_class: {c!r} is not allowed; expected a class in "
                f"[0, {model.num_classes - 1}]"
            )
        return int(c)

    def divergence(self, delta: torch.Tensor) -> torch.Tensor:
        o = self.options
        return gaussian_f_divergence(delta, o["divergence"], o["alpha"], o["max_delta"])

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        if self.anchor is None:
            raise RuntimeError("call setup(model, split) before loss(): fdiv needs its anchor")
        l_r = per_sample_loss(model, retain.images, retain.labels, generator).mean()
        a = forget.images
        t = model.sample_t(len(forget), generator)
        a_t = model.add_noise(a, t, randn(a.shape, generator, a))
        pred = model.eps(a_t, t, model_labels(model, forget.labels))
        with torch.no_grad():
            target = self.anchor.eps(a_t, t, torch.full_like(forget.labels, self.anchor_label))
        delta = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
        l_f = self.divergence(delta).mean()
        lam_t = as_lam(lam, l_r.device)
        return LossTerms(retain=l_r, forget=l_f, total=(1 - lam_t) * l_r + lam_t * l_f)
