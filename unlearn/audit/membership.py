"""Loss-based membership inference: do the forget samples still look like training data?

The attack scores each image by its fixed-noise training loss (denoising loss for diffusion
models, negative ELBO for the VAE), averaged over ``audit.mia_noise`` (t, ε) draws; a lower
loss says "member". Its ROC AUC separates:

- ``forget``: the forget samples from held-out images of the same classes (for a memorised
  outlier: the outlier from near copies of it, the outlier plus small pixel noise);
- ``retain``: retain training samples from held-out images of the retained classes (what
  membership looks like for data the model still has);
- ``unseen``: two halves of held-out images the model never saw (the attack's chance level).

After unlearning, the forget AUC should fall to the unseen one. Members and non-members
share their noise draws (draw i serves sample i of both sides), so the AUC measures the
images, not the noise; everything is seeded, so two audits agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import AuditConfig, ConfigError
from unlearn.data import ForgetSplit, ImageData
from unlearn.methods.common import is_vae, per_sample_loss, randn, vae_latent_noise


@dataclass(frozen=True)
class MembershipAUC:
    """The attack's AUCs for one model (0.5 = indistinguishable)."""

    model: str
    forget: float
    retain: float
    unseen: float
    samples: int

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "forget_auc": self.forget,
            "retain_auc": self.retain,
            "unseen_auc": self.unseen,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class MembershipSets:
    """(members, non-members) image pairs of equal size for each AUC."""

    forget: tuple[ImageData, ImageData]
    retain: tuple[ImageData, ImageData]
    unseen: tuple[ImageData, ImageData]


def take(data: ImageData, n: int, g: torch.Generator) -> ImageData:
    return data.subset(torch.randperm(len(data), generator=g)[:n])


def _near_copies(outlier: torch.Tensor, n: int, radius: float, g: torch.Generator) -> ImageData:
    noise = torch.randn((n, *outlier.shape), generator=g) * (radius / 2)
    imgs = (outlier.expand(n, *outlier.shape) + noise).clamp(-1, 1)
    return ImageData(imgs, torch.full((n,), -1, dtype=torch.long), 0)


def membership_sets(
    split: ForgetSplit,
    heldout: ImageData,
    classes: tuple[int, ...],
    radius: float,
    cfg: AuditConfig,
) -> MembershipSets:
    """Seeded member / non-member sets; fails when a side would have fewer than 2 images."""
    g = torch.Generator().manual_seed(cfg.seed * 104_729 + 17)
    in_forget = torch.isin(heldout.labels, torch.tensor(classes, dtype=torch.long))
    held_forget = heldout.subset(torch.nonzero(in_forget).flatten())
    held_retain = heldout.subset(torch.nonzero(~in_forget).flatten())
    if classes:
        n_f = min(cfg.mia_samples, len(split.forget), len(held_forget))
        what = f"held-out images of the forget classes {list(classes)}"
        forget = (take(split.forget, n_f, g), take(held_forget, n_f, g))
    else:
        n_f = min(cfg.mia_samples, len(split.forget))
        what = "forget samples"
        o = split.outlier
        members = ImageData(o.expand(n_f, *o.shape).clone(), torch.full((n_f,), -1), 0)
        forget = (members, _near_copies(o, n_f, radius, g))
    if n_f < 2:
        raise ConfigError(
            f"audit.mia_samples: membership inference needs at least 2 {what}; found {n_f}"
        )
    return with_retain(forget, split.retain, held_retain, cfg, g)


def with_retain(
    forget: tuple[ImageData, ImageData],
    train_retain: ImageData,
    held_retain: ImageData,
    cfg: AuditConfig,
    g: torch.Generator,
) -> MembershipSets:
    """The sets around a given forget pair: retain members vs held-out retain images, and two
    halves of the held-out retain images (chance level)."""
    n_r = min(cfg.mia_samples, len(train_retain), len(held_retain))
    half = len(held_retain) // 2
    n_u = min(cfg.mia_samples, half)
    if min(n_r, n_u) < 2:
        raise ConfigError(
            "audit.mia_samples: membership inference needs at least 4 held-out images of the "
            f"retained classes; found {len(held_retain)}"
        )
    retain = (take(train_retain, n_r, g), take(held_retain, n_r, g))
    perm = torch.randperm(len(held_retain), generator=g)
    unseen = (held_retain.subset(perm[:n_u]), held_retain.subset(perm[half : half + n_u]))
    return MembershipSets(forget, retain, unseen)


@torch.no_grad()
def attack_losses(
    model: torch.nn.Module, data: ImageData, n_noise: int, seed: int, batch: int = 256
) -> torch.Tensor:
    """Per-image training loss averaged over ``n_noise`` fixed (t, ε) draws (CPU, float64)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total = torch.zeros(len(data), dtype=torch.float64)
    x_all, y_all = data.images.to(dev), data.labels.to(dev)
    for j in range(n_noise):
        g = torch.Generator().manual_seed(seed * 1_000_003 + j)
        if is_vae(model):
            t_all, eps_all = None, vae_latent_noise(model, x_all, g)
        else:
            t_all, eps_all = model.sample_t(len(data), g), randn(x_all.shape, g, x_all)
        for i in range(0, len(data), batch):
            sl = slice(i, i + batch)
            t = None if t_all is None else t_all[sl]
            per = per_sample_loss(model, x_all[sl], y_all[sl], g, t=t, eps=eps_all[sl])
            total[sl] += per.double().cpu()
    model.train(was)
    return total / n_noise


def auc(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    """ROC AUC of "lower loss = member" (Mann–Whitney; ties count one half)."""
    from sklearn.metrics import roc_auc_score

    y = [1] * len(members) + [0] * len(nonmembers)
    score = torch.cat([-members, -nonmembers]).tolist()
    return float(roc_auc_score(y, score))


def pair_auc(model: torch.nn.Module, pair: tuple[ImageData, ImageData], cfg: AuditConfig) -> float:
    """The attack's AUC on one (members, non-members) pair."""
    a, b = (attack_losses(model, d, cfg.mia_noise, cfg.seed) for d in pair)
    return auc(a, b)


def membership(
    model: torch.nn.Module, name: str, sets: MembershipSets, cfg: AuditConfig
) -> MembershipAUC:
    """The three AUCs of one model."""
    return MembershipAUC(
        model=name,
        forget=pair_auc(model, sets.forget, cfg),
        retain=pair_auc(model, sets.retain, cfg),
        unseen=pair_auc(model, sets.unseen, cfg),
        samples=len(sets.forget[0]),
    )
