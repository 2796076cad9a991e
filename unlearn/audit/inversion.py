"""Concept inversion: textual inversion on the frozen unlearned pipeline.

An erased concept may still be reachable through the text encoder's input space: learn ONE
new token embedding from forget images (Gal et al., 2023, "An Image is Worth One Word"; used
against erasure by Pham et al., 2024, "Circumventing Concept Erasure Methods"), generate
``"<anchor> <inverted>"`` and count the concept. The token is added to a copy of the
tokenizer, the copy of the text encoder's embedding table grows by one row (an SDXL pipeline:
both tokenizers and both encoders' tables, :meth:`~unlearn.models.sdxl.SDXLModel.with_token`),
and only that row trains (a gradient mask; AdamW without weight decay leaves every other row exactly as it
was); UNet and VAE stay frozen and are shared with the audited pipeline, which is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import AuditConfig, ConfigError
from unlearn.data import ImageData
from unlearn.methods.common import randn, sq_err

TOKEN = "<inverted>"


@dataclass(frozen=True)
class InversionResult:
    """The learned token on one model: its prompt, final loss and recovered concept rate.

    ``anchor_rate`` is the rate of the anchor prompt alone (what the model makes without the
    token), so ``rate - anchor_rate`` is what the token recovers.
    """

    model: str
    prompt: str
    steps: int
    loss: float
    rate: float
    anchor_rate: float | None
    grid: str

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "steps": self.steps,
            "loss": self.loss,
            "recovered_concept_rate": self.rate,
            "anchor_concept_rate": self.anchor_rate,
            "grid": self.grid,
        }


def inversion_prompt(anchor: str) -> str:
    return f"{anchor} {TOKEN}".strip()


def invert(model, forget: ImageData, anchor: str, a: AuditConfig, device: torch.device):
    """A pipeline sharing ``model``'s UNet and VAE whose tokenizer knows :data:`TOKEN`,
    learned for ``audit.inversion_steps`` steps on the forget latents; returns it and the
    mean loss of the last tenth of the steps."""
    if getattr(model, "text_encoder", None) is None:
        raise ConfigError("audit.attacks: concept inversion needs a model with a text encoder")
    if len(forget) == 0:
        raise ConfigError("audit: the concept-inversion attack set is empty (no forget images)")
    try:  # a copy of each embedding table the model's text goes through, one row more
        inv, tables = model.with_token(TOKEN)
    except ValueError:
        raise ConfigError(f"audit: the tokenizer already has the token {TOKEN!r}") from None
    inv = inv.to(device).eval()
    weights = []
    for enc, new in tables:
        weight = enc.get_input_embeddings().weight
        weight.requires_grad_(True)
        mask = torch.zeros(weight.shape[0], 1, device=weight.device)
        mask[new] = 1.0
        weight.register_hook(lambda grad, mask=mask: grad * mask)
        weights.append(weight)
    flags = [p.requires_grad for p in model.unet.parameters()]
    model.unet.requires_grad_(False)
    opt = torch.optim.AdamW(weights, lr=a.inversion_lr, weight_decay=0.0)
    prompt = inversion_prompt(anchor)
    losses: list[float] = []
    try:
        for step in range(a.inversion_steps):
            g = torch.Generator().manual_seed(a.seed * 1_000_003 + 7_777_777 + step)
            idx = torch.randint(0, len(forget), (a.relearn_batch_size,), generator=g)
            z0 = forget.images[idx].to(device)
            t = inv.sample_t(len(idx), g)
            eps = randn(z0.shape, g, z0)
            cond = inv.encode_cond([prompt]).expand(len(idx))
            pred = inv.denoise(inv.add_noise(z0, t, eps), t, cond)
            loss = sq_err(pred, eps).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach().item())
    finally:
        for p, f in zip(model.unet.parameters(), flags, strict=True):
            p.requires_grad_(f)
    for weight in weights:
        weight.requires_grad_(False)
    tail = losses[-max(1, len(losses) // 10) :]
    return inv, sum(tail) / len(tail)
