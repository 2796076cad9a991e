"""VDU: variational diffusion unlearning with the forget set only (Panda et al.).

Loss = λ · plasticity inducer (raise the training loss of forget data, bounded) +
γ · stability regulariser Σ (θ-μ)²/(2σ²) in parameter space, with μ the pretrained weights
(a Gaussian prior around them; its variances from a Fisher estimate or from checkpoints).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import PROMPT_KINDS, ConfigError, MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import ALL_FAMILIES, as_lam, per_sample_loss
from unlearn.methods.options import PREFIX, Opt
from unlearn.types import Batch, LossTerms


class VDU(UnlearningMethod):
    """Forget-set-only unlearning: bounded plasticity plus a weighted L2 pull to μ.

    With L_f the forget batch's training loss (denoising loss, negative ELBO per dimension
    for the VAE)::

        plasticity P = relu(margin - L_f)          (plasticity: hinge, default)
                     = -log(1 - exp(-L_f))          (plasticity: log)
        stability  R = Σ_i (θ_i - μ_i)² / (2 σ_i²)
        total        = λ·P + γ·R

    Plain ascent on L_f diverges; both P are bounded below by 0: the hinge stops pushing
    once L_f reaches ``margin``, the log form's push decays like exp(-L_f). μ are the weights
    at :meth:`setup` (the pretrained model). σ² per parameter (``variance``):

    - ``constant``: σ² = 1.
    - ``fisher``: σ² = 1/F with F a diagonal empirical Fisher of the training loss on the
      forget set (mean of squared minibatch gradients over ``fisher_batches`` batches of
      ``fisher_batch_size``, drawn with ``seed``): parameters that matter for the data to
      forget are held tightly (the Laplace view of the pretrained posterior).
    - ``checkpoints``: σ² = mean_j (θ_j - μ)² over the given model directories (other
      pretrained checkpoints of the same architecture, loaded with ``load_model``).

    With ``normalize`` the Fisher (or the checkpoint variance) is divided by its mean over
    all parameters, so γ means the same in every mode; σ² is floored at ``min_variance``.
    ``LossTerms``: retain = γ·R (what keeps the model), forget = L_f, extras carry P and R.

    λ weighs the plasticity inducer (forgetting) against the fixed-weight stability
    regulariser γ·R (keeping the pretrained model): λ = 0 leaves the weights where they are.

    **Text-to-image** (``t2i``, the seed's feature unlearning on Stable Diffusion): only the
    forget prompts and their latents are used — a class ("seven") or an attribute
    (``forget.concept: thick`` with prompts such as "a thick handwritten digit": the latents
    of images measured thick). μ, σ² and R cover what ``model.train`` trains (all UNet
    weights, its cross-attention or the LoRA adapters), never the frozen VAE / text encoder.

    Args:
        cfg: the method config; ``options``:

            - ``gamma``: weight γ of the stability term (default 1).
            - ``variance``: ``constant`` (default) | ``fisher`` | ``checkpoints``.
            - ``checkpoints``: model directories (``variance: checkpoints`` only).
            - ``plasticity``: ``hinge`` (default) | ``log``.
            - ``margin``: hinge: the forget loss at which P reaches 0 (default 1.0, the loss
              of predicting zero noise).
            - ``fisher_batches``, ``fisher_batch_size``, ``seed``: the Fisher estimate.
            - ``normalize``: divide F / the checkpoint variance by its mean (default true).
            - ``min_variance``: floor of σ² (default 1e-3).
    """

    name = "vdu"
    families = (*ALL_FAMILIES, *PROMPT_KINDS)
    uses_retain = False
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "gamma": Opt(
            1.0, "weight of the stability regulariser", lo=0.0, search=(0.1, 10.0), search_log=True
        ),
        "variance": Opt(
            "constant",
            "sigma^2 of the prior",
            kind=str,
            choices=("constant", "fisher", "checkpoints"),
        ),
        "checkpoints": Opt([], "model directories for variance: checkpoints", kind=list),
        "plasticity": Opt("hinge", "bounded plasticity term", kind=str, choices=("hinge", "log")),
        "margin": Opt(1.0, "hinge: forget loss where plasticity stops", lo=0.0, lo_open=True),
        "fisher_batches": Opt(4, "minibatches of the Fisher estimate", kind=int, lo=1),
        "fisher_batch_size": Opt(16, "forget samples per Fisher minibatch", kind=int, lo=1),
        "seed": Opt(0, "seed of the Fisher estimate", kind=int, lo=0),
        "normalize": Opt(True, "divide F / variance by its mean", kind=bool),
        "min_variance": Opt(1e-3, "floor of sigma^2", lo=0.0, lo_open=True),
    }

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        o = self.options
        ckpts = o["checkpoints"]
        if o["variance"] == "checkpoints":
            if not ckpts or not all(isinstance(c, str) and c for c in ckpts):
                raise ConfigError(
                    f"{PREFIX}.checkpoints: {ckpts!r} is not allowed; expected a non-empty "
                    "list of model directories (variance: checkpoints)"
                )
        elif ckpts:
            raise ConfigError(
                f"{PREFIX}.checkpoints: {ckpts!r} is not allowed; expected [] unless "
                "variance: checkpoints"
            )
        self.mu: dict[str, torch.Tensor] = {}
        self.precision: dict[str, torch.Tensor] = {}

    # -- setup: μ and 1/σ² -------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        params = self._params(model)
        self.mu = {k: p.detach().clone() for k, p in params.items()}
        mode = self.options["variance"]
        if mode == "constant":
            self.precision = {k: torch.ones_like(p) for k, p in self.mu.items()}
            return
        if mode == "fisher":
            # σ² = 1/F: the precision is the Fisher itself
            prec = self._fisher(model, params, split)
        else:
            var = self._checkpoint_variance(model)
            prec = {k: 1.0 / v.clamp_min(1e-30) for k, v in var.items()}
        if self.options["normalize"]:
            if mode == "fisher":
                mean = _mean(prec.values())
                prec = {k: v / mean if mean > 0 else torch.ones_like(v) for k, v in prec.items()}
            else:  # normalise the variance, i.e. the inverse precision
                mean_var = _mean([1.0 / v for v in prec.values()])
                prec = {k: v * mean_var for k, v in prec.items()}
        cap = 1.0 / self.options["min_variance"]
        self.precision = {k: v.clamp(max=cap) for k, v in prec.items()}

    def _params(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        wanted = {id(p) for p in self.trainable_parameters(model) if p.requires_grad}
        return {k: p for k, p in model.named_parameters() if id(p) in wanted}

    def _fisher(self, model, params, split: ForgetSplit) -> dict[str, torch.Tensor]:
        o = self.options
        g = torch.Generator().manual_seed(o["seed"])
        dev = next(iter(params.values())).device
        names, plist = list(params), list(params.values())
        fisher = [torch.zeros_like(p) for p in plist]
        data = split.forget
        for _ in range(o["fisher_batches"]):
            idx = torch.randint(0, len(data), (o["fisher_batch_size"],), generator=g)
            x, y = data.images[idx].to(dev), data.labels[idx].to(dev)
            loss = per_sample_loss(model, x, y, g).mean()
            grads = torch.autograd.grad(loss, plist, allow_unused=True)
            for f, gr in zip(fisher, grads, strict=True):
                if gr is not None:
                    f += gr.detach().pow(2) / o["fisher_batches"]
        return dict(zip(names, fisher, strict=True))

    def _checkpoint_variance(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from unlearn.models import load_model

        ckpts = self.options["checkpoints"]
        var = {k: torch.zeros_like(m) for k, m in self.mu.items()}
        for path in ckpts:
            other = dict(load_model(path).named_parameters())
            for k, m in self.mu.items():
                if k not in other or other[k].shape != m.shape:
                    raise ConfigError(
                        f"{PREFIX}.checkpoints: {path!r} is not allowed; expected a checkpoint "
                        f"of the same architecture (parameter {k!r} is missing or differs)"
                    )
                var[k] += (other[k].detach().to(m.device, m.dtype) - m).pow(2) / len(ckpts)
        return var

    # -- the loss ---------------------------------------------------------------------------
    def regularizer(self, model: torch.nn.Module) -> torch.Tensor:
        """R = Σ (θ - μ)² / (2σ²) over the trainable parameters (0 at the setup weights)."""
        if not self.mu:
            raise RuntimeError("call setup(model, split) before loss(): VDU needs μ")
        params = self._params(model)
        terms = [
            (self.precision[k] * (p.float() - self.mu[k].float()).pow(2)).sum()
            for k, p in params.items()
        ]
        return 0.5 * torch.stack(terms).sum()

    def plasticity(self, forget_loss: torch.Tensor) -> torch.Tensor:
        if self.options["plasticity"] == "hinge":
            return torch.relu(self.options["margin"] - forget_loss)
        # -log(1 - e^{-L}): +inf at L = 0, decays to 0 like e^{-L}; never below 0
        return -torch.log(-torch.expm1(-forget_loss.clamp_min(1e-12)))

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        l_f = per_sample_loss(model, forget.images, forget.labels, generator).mean()
        plast = self.plasticity(l_f)
        reg = self.regularizer(model)
        stab = self.options["gamma"] * reg
        total = as_lam(lam, l_f.device) * plast + stab
        extras = {"vdu/plasticity": float(plast.detach()), "vdu/stability": float(reg.detach())}
        return LossTerms(retain=stab, forget=l_f, total=total, extras=extras)


def _mean(tensors) -> float:
    tensors = list(tensors)
    n = sum(t.numel() for t in tensors)
    return float(sum(t.double().sum() for t in tensors)) / max(1, n)
