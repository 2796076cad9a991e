"""The audit's headline numbers at a small budget, for drivers that score every run they make.

``unlearn bench --audit`` (its columns), ``tune.objective=attacked_forget_rate`` (a trial's
forget term) and ``env.attack_weight`` (the env's end-of-episode reward) attack each
unlearned model once, on the model alone (no base-model curves):

- *attacked forget rate*: the forget (or outlier) rate after the relearning attack on
  ``audit.relearn_forget_samples`` forget samples for ``audit.attacked_steps`` steps;
- *benign forget rate*: the same after as many steps on retain data only;
- *MIA AUC*: the loss attack separating the forget samples from held-out ones (0.5 = chance);
- *adversarial concept rate* (a family whose audit has the ``adversarial`` attack: pipelines):
  the concept rate of the forget prompts with adversarial words appended
  (:mod:`unlearn.audit.adversarial`, the unlearned model as its own judge): the attack's
  success rate.

The rate an attack tries to bring back is measured as the family says
(``Family.attack_meter``: the forget rate of images, the concept rate of a pipeline).

The attack sets, batches, noise and sample count are those of ``unlearn audit`` (seeded by
``audit.seed``), so the attacked forget rate equals the last checkpoint of an audit with
``audit.relearn_steps = audit.attacked_steps``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from unlearn.audit.membership import membership_sets, pair_auc
from unlearn.audit.relearn import attack_set, relearn
from unlearn.config import AuditConfig, Config, ConfigError
from unlearn.data import ImageData
from unlearn.families import family_of
from unlearn.unlearner import Unlearner

#: the names of these numbers in results, metrics (``audit/<name>``) and the bench's columns
KEYS = ("attacked_forget_rate", "benign_forget_rate", "mia_auc", "adversarial_concept_rate")


@dataclass(frozen=True)
class AttackedRates:
    """One unlearned model under attack (NaN where a part was not run)."""

    attacked_forget_rate: float = math.nan
    benign_forget_rate: float = math.nan
    mia_auc: float = math.nan
    adversarial_concept_rate: float = math.nan
    wall_time: float = 0.0

    def metrics(self, prefix: str = "audit/") -> dict[str, float]:
        """The finite numbers, namespaced (``audit/attacked_forget_rate``, ...)."""
        out = {f"{prefix}{k}": getattr(self, k) for k in KEYS}
        out[f"{prefix}wall_time"] = self.wall_time
        return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def quick(a: AuditConfig) -> AuditConfig:
    """The audit budget with one checkpoint, after ``attacked_steps`` steps."""
    return dataclasses.replace(a, relearn_steps=a.attacked_steps, relearn_every=a.attacked_steps)


def attacked_rates(
    unl: Unlearner,
    heldout: ImageData | None = None,
    benign: bool = True,
    relearn_attack: bool = True,
    adversarial: bool = False,
) -> AttackedRates:
    """Attack a copy of the unlearner's current model (the model itself is not changed).

    ``relearn_attack``: the relearning attack on forget samples; ``heldout`` (images no
    model trained on) enables the MIA AUC; ``benign`` the retain-only attack;
    ``adversarial`` the adversarial-prompt attack (families that have it). The forget
    target is the unlearner's own (its current env instance included).
    """
    cfg: Config = unl.cfg
    family = family_of(cfg)
    if (relearn_attack or benign) and not family.attacked_rate:
        raise ConfigError(
            f"model.kind: {cfg.model.kind!r} has no attacked forget rate (bench --audit, "
            "tune.objective, env.attack_weight); audit it with `unlearn audit`"
        )
    if adversarial and "adversarial" not in family.attacks:
        raise ConfigError(
            f"model.kind: {cfg.model.kind!r} has no text encoder for the adversarial-prompt "
            f"attack; its attacks: {', '.join(family.attacks)}"
        )
    t0 = time.perf_counter()
    a = quick(cfg.audit)
    meter = family.attack_meter(cfg, unl)
    sets = None
    if heldout is not None:  # validated before any attack runs
        classes = tuple(meter.classes)
        sets = membership_sets(unl.split, heldout, classes, cfg.forget.outlier.radius, a)
    if adversarial:
        from unlearn.audit.adversarial import check_adversarial

        check_adversarial(unl.model, tuple(meter.prompts), a)

    def attacked(name: str) -> float:
        data = attack_set(unl.split, name, a)
        _, rates, _ = relearn(unl.model, data, a, meter, unl.device)
        return rates[-1]

    forget = attacked("forget") if relearn_attack else math.nan
    retain = attacked("retain") if benign else math.nan
    mia = pair_auc(unl.model, sets.forget, a) if sets is not None else math.nan
    adv = math.nan
    if adversarial:
        from unlearn.audit.adversarial import attack_prompts

        skip = [math.nan] * len(meter.prompts)  # the pre-attack rate is the run's own
        rows, _ = attack_prompts(
            "unlearned", unl.model, meter, unl.split.forget, a, unl.device, skip
        )
        adv = sum(r.rate_after for r in rows) / len(rows)
    return AttackedRates(forget, retain, mia, adv, time.perf_counter() - t0)
