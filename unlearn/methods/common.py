"""Helpers shared by the methods: random draws, per-sample losses, frozen copies, gradients.

All randomness comes from the step's CPU ``torch.Generator`` and is moved to the model's
device afterwards, so a step is reproducible on any device (same seed → same draws).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from unlearn.types import Batch

DIFFUSION = ("ddpm", "cond_ddpm", "vpsde")
ALL_FAMILIES = (*DIFFUSION, "vae")


def kind_name(model: torch.nn.Module) -> str:
    """The model's kind (``ddpm``, ``cond_ddpm``, ``vpsde``, ``vae``, ``t2i``) or its class
    name, for messages; whether a model is a pipeline is :func:`~unlearn.models.is_prompted`."""
    return str(getattr(model, "kind", type(model).__name__))


def is_vae(model: torch.nn.Module) -> bool:
    """The VAE trains on its ELBO, not on a denoising loss."""
    from unlearn.models.vae import ConvVAE

    return isinstance(model, ConvVAE)


def randn(shape: Sequence[int], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on the CPU generator, on ``like``'s device (float32)."""
    return torch.randn(tuple(shape), generator=g).to(like.device)


def rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device)


def as_lam(lam: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """λ as a float32 scalar tensor on ``device``, keeping its graph when it has one."""
    if isinstance(lam, torch.Tensor):
        return lam.to(device=device, dtype=torch.float32).reshape(())
    return torch.tensor(float(lam), device=device)


def lam_value(lam: float | torch.Tensor) -> float:
    return float(lam.detach()) if isinstance(lam, torch.Tensor) else float(lam)


def model_labels(model: torch.nn.Module, labels: torch.Tensor) -> torch.Tensor | None:
    """Class labels for a conditional model (the outlier's label -1 → the null class)."""
    if not getattr(model, "conditional", False):
        return None
    null = torch.full_like(labels, model.null_class)
    return torch.where(labels < 0, null, labels).long()


def resample(batch: Batch, size: int, g: torch.Generator) -> Batch:
    """``batch`` itself when it has ``size`` rows, else ``size`` rows drawn with replacement."""
    if len(batch) == size:
        return batch
    idx = torch.randint(0, len(batch), (size,), generator=g).to(batch.images.device)
    return Batch(batch.images[idx], batch.labels[idx])


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A detached deep copy in eval mode (anchors, pretrained references)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class AdaptersOff(torch.nn.Module):
    """The original model of a LoRA-trained UNet without a copy: the live UNet itself, run
    without gradients, in eval mode, with its adapters switched off for the call. Under LoRA
    only the adapters train, so the base weights this reads are the original ones; on SDXL
    base this saves the 2.6B-parameter copy (9.6 GiB in float32), on SD-1.5 0.86B."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.__dict__["unet"] = unet  # not a submodule: its parameters stay the model's

    def forward(self, *args, **kwargs):
        unet, was = self.unet, self.unet.training
        unet.eval()
        unet.disable_adapters()
        try:
            with torch.no_grad():
                return unet(*args, **kwargs)
        finally:
            unet.enable_adapters()
            unet.train(was)


def _has_adapters(unet: torch.nn.Module) -> bool:
    return bool(getattr(unet, "_hf_peft_config_loaded", False)) and hasattr(
        unet, "disable_adapters"
    )


def frozen_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """The original t2i UNet's predictions, whatever ``model.train`` adds: under LoRA the
    live UNet with its adapters off (:class:`AdaptersOff`, no copy); otherwise a frozen copy
    (with its adapters, if any, switched off)."""
    if not _has_adapters(unet):
        return frozen_copy(unet)
    if all("lora_" in n for n, p in unet.named_parameters() if p.requires_grad):
        return AdaptersOff(unet)  # nothing but the adapters trains: the base is the original
    ref = frozen_copy(unet)
    ref.disable_adapters()
    return ref


class FrozenT2I:
    """The frozen original of a text-to-image model: a copy of its UNet only, run with the
    live model's (frozen) prompt table, so the VAE and text encoder are never duplicated
    (on a 1B-parameter SD pipeline the copy is the UNet's 0.86B, not the whole)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.unet = frozen_unet(model.unet)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None):
        return self.model.eps(x_t, t, labels, unet=self.unet)


def frozen_denoiser(model: torch.nn.Module):
    """The frozen pretrained reference the anchor-based methods compare against: anything
    with ``eps(x_t, t, labels)``; a :class:`FrozenT2I` for a pipeline, else a whole copy."""
    from unlearn.models.io import is_prompted

    return FrozenT2I(model) if is_prompted(model) else frozen_copy(model)


def sq_err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over all non-batch dimensions, in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def per_sample_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    g: torch.Generator,
    t: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's training loss per sample: ``||ε_θ(x_t, t) - ε||²`` (pixel mean) for
    diffusion models, the negative ELBO per dimension (without its constant) for the VAE.

    ``t`` and ``eps`` (diffusion) or ``eps`` (VAE latent noise) may be given to share draws
    between two batches; otherwise they are drawn from ``g``.
    """
    if is_vae(model):
        if eps is None:
            eps = vae_latent_noise(model, x0, g)
        out = model(x0, eps)
        return (out.rec_loss + out.kl).float() / x0[0].numel()
    if t is None:
        t = model.sample_t(x0.shape[0], g)
    if eps is None:
        eps = randn(x0.shape, g, x0)
    if getattr(model, "completes", False):  # an image-completion model: its masked loss
        return model.recon_loss(x0, x0, t, eps, reduce=False)
    x_t = model.add_noise(x0, t, eps)
    return sq_err(model.eps(x_t, t, model_labels(model, labels)), eps)


def vae_latent_noise(model: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Latent-shaped standard normal noise for the VAE (resolution / 4, latent channels)."""
    lc, r = model.config["latent_channels"], model.resolution // 4
    return randn((x0.shape[0], lc, r, r), g, x0)


def flat_norm(grads: Sequence[torch.Tensor | None]) -> float:
    """Euclidean norm of a list of per-parameter gradients (``None`` = zero), as a float.

    The one definition (the loop's gradient statistics and the gradient-form methods both
    use it): per-parameter sums in float32, their total in float64, one device sync.
    """
    sq = [gr.detach().float().pow(2).sum().double() for gr in grads if gr is not None]
    return float(torch.stack(sq).sum().sqrt()) if sq else 0.0


def dot(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> torch.Tensor:
    terms = [
        (x.detach().float() * y.detach().float()).sum()
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None
    ]
    return torch.stack(terms).sum() if terms else torch.tensor(0.0)


def axpy(
    a: Sequence[torch.Tensor | None], coef: float, b: Sequence[torch.Tensor | None]
) -> list[torch.Tensor | None]:
    """``a + coef · b`` per parameter, ``None`` standing for zero (both ``None`` → ``None``)."""
    out: list[torch.Tensor | None] = []
    for x, y in zip(a, b, strict=True):
        if y is None:
            out.append(None if x is None else x.clone())
        elif x is None:
            out.append(coef * y)
        else:
            out.append(x + coef * y)
    return out


def clip_to_norm(
    grads: list[torch.Tensor | None], clip: float, norm: float | None = None
) -> list[torch.Tensor | None]:
    """Scale ``grads`` so their total norm is at most ``clip`` (``clip <= 0``: unchanged);
    ``norm``: their :func:`flat_norm` when the caller already has it."""
    if clip <= 0:
        return grads
    if norm is None:
        norm = flat_norm(grads)
    if not math.isfinite(norm) or norm <= clip:
        return grads
    f = clip / (norm + 1e-12)
    return [None if gr is None else gr * f for gr in grads]
