"""Relearning attack: fine-tune a copy of a model and watch the forget rate come back.

Erasure that a few fine-tuning steps undo is not erasure. Two attack sets: retain data only
(benign fine-tuning, which should not revive the forgotten data) and ``k`` forget samples
(an adversary holding a few of them). Base and unlearned model see the same batches and
noise (generators seeded by (audit seed, step)), so their curves compare like for like;
the attack's loss is the model's own training loss (``methods.common.per_sample_loss``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearn.config import AuditConfig, ConfigError
from unlearn.data import ForgetSplit, ImageData
from unlearn.methods.common import per_sample_loss

ATTACKS = ("retain", "forget")


@dataclass(frozen=True)
class RelearnCurve:
    """The forget rate of one model at each checkpoint of one attack.

    Args:
        attack: ``retain`` (benign fine-tuning) or ``forget`` (k forget samples).
        model: ``base`` or ``unlearned``.
        steps: checkpoints, starting with 0 (before the attack).
        rates: the forget (or outlier) rate at each checkpoint.
        returned_at: the first checkpoint whose rate reaches the return threshold; ``None``
            when it stays below within the budget.
        grid: file name (in the report folder) of the samples after the attack.
    """

    attack: str
    model: str
    steps: tuple[int, ...]
    rates: tuple[float, ...]
    returned_at: int | None
    grid: str

    def to_dict(self) -> dict:
        return {
            "attack": self.attack,
            "model": self.model,
            "steps": list(self.steps),
            "rates": list(self.rates),
            "returned_at": self.returned_at,
            "grid": self.grid,
        }


def checkpoints(steps: int, every: int) -> list[int]:
    """``every, 2·every, ...`` up to ``steps``, always ending at ``steps``."""
    return sorted({*range(every, steps + 1, every), steps})


def attack_set(split: ForgetSplit, attack: str, cfg: AuditConfig) -> ImageData:
    """The images the attacker fine-tunes on (a seeded subset; fails when it is empty)."""
    if attack not in ATTACKS:
        raise ConfigError(f"audit attack: {attack!r} is unknown; expected one of {ATTACKS}")
    src, n = (
        (split.retain, cfg.relearn_retain_samples)
        if attack == "retain"
        else (split.forget, cfg.relearn_forget_samples)
    )
    if len(src) == 0:
        raise ConfigError(f"audit: the {attack} attack set is empty (no {attack} samples)")
    g = torch.Generator().manual_seed(cfg.seed * 7_919 + ATTACKS.index(attack))
    return src.subset(torch.randperm(len(src), generator=g)[: min(n, len(src))])


def returned_at(steps: list[int], rates: list[float], threshold: float) -> int | None:
    """First checkpoint whose rate is at least ``threshold`` (a positive threshold only)."""
    for s, r in zip(steps, rates, strict=True):
        if threshold > 0 and r >= threshold:
            return s
    return None


def relearn(
    model: torch.nn.Module,
    data: ImageData,
    cfg: AuditConfig,
    measure: Callable[[torch.nn.Module], tuple[float, torch.Tensor]],
    device: torch.device,
    on_checkpoint: Callable[[int, float], None] | None = None,
) -> tuple[list[int], list[float], torch.Tensor]:
    """Fine-tune a copy of ``model`` on ``data``; the rate after each checkpoint.

    Returns the checkpoint steps, their rates (step 0 excluded: the caller measured the
    untouched model once for all attacks) and the samples of the last checkpoint. ``model``
    itself is not changed.
    """
    attacked = copy.deepcopy(model).to(device).train()
    params = [p for p in attacked.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.relearn_lr, weight_decay=0.0)
    marks = set(checkpoints(cfg.relearn_steps, cfg.relearn_every))
    steps: list[int] = []
    rates: list[float] = []
    samples = torch.empty(0)
    for step in range(cfg.relearn_steps):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(data), (cfg.relearn_batch_size,), generator=g)
        x, y = data.images[idx].to(device), data.labels[idx].to(device)
        loss = per_sample_loss(attacked, x, y, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step + 1 in marks:
            rate, samples = measure(attacked)
            steps.append(step + 1)
            rates.append(rate)
            if on_checkpoint is not None:
                on_checkpoint(step + 1, rate)
    return steps, rates, samples
