"""The audit's result: a JSON report (deterministic for a seed) and its tables.

``report.json`` holds no wall times and no run ids, so two audits of one model with one
config write identical files; timings go to MLflow and the console.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from unlearn.audit.adversarial import AdversarialPrompt
from unlearn.audit.inversion import InversionResult
from unlearn.audit.membership import MembershipAUC
from unlearn.audit.relearn import RelearnCurve

REPORT = "report.json"


@dataclass(frozen=True)
class PromptRates:
    """Paraphrase leakage of one model: the concept rate on the erased prompts and on the
    held-out paraphrases (``forget.paraphrases``, never trained on)."""

    model: str
    prompt_rate: float
    paraphrase_rate: float
    grid: str

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "prompt_concept_rate": self.prompt_rate,
            "paraphrase_concept_rate": self.paraphrase_rate,
            "grid": self.grid,
        }


@dataclass(frozen=True)
class AuditReport:
    """Relearning curves and membership AUCs of a base and an unlearned model.

    Args:
        model_dir, base_dir: the audited models.
        kind: the model family.
        metric: ``forget_rate`` (classes) or ``outlier_rate`` (memorised outlier).
        forget_classes: the forgotten classes (empty for the outlier).
        threshold: the rate counted as "returned" (``audit.return_fraction`` x the base's).
        start: the rate of each model before any attack.
        relearn: one curve per (attack, model).
        membership: the AUCs of each model.
        audit: the ``audit`` config section (the attack budgets).
        attacks: the attacks that ran.
        paraphrase: t2i: paraphrase leakage of each model.
        inversion: t2i: concept inversion (textual inversion) on each model.
        adversarial: t2i: the adversarial-prompt attack, per (model, forget prompt).
    """

    model_dir: str
    base_dir: str
    kind: str
    metric: str
    forget_classes: tuple[int, ...]
    threshold: float
    start: dict[str, float]
    relearn: tuple[RelearnCurve, ...]
    membership: tuple[MembershipAUC, ...]
    audit: dict
    attacks: tuple[str, ...] = ("relearn", "mia")
    paraphrase: tuple[PromptRates, ...] = ()
    inversion: tuple[InversionResult, ...] = ()
    adversarial: tuple[AdversarialPrompt, ...] = ()

    def adversarial_rates(self) -> dict[str, tuple[float, float]]:
        """Per model: the (pre-attack, post-attack) concept rate over its forget prompts."""
        out: dict[str, tuple[float, float]] = {}
        for name in dict.fromkeys(r.model for r in self.adversarial):
            rows = [r for r in self.adversarial if r.model == name]
            pre = sum(r.rate_before for r in rows) / len(rows)
            out[name] = (pre, sum(r.rate_after for r in rows) / len(rows))
        return out

    def to_dict(self) -> dict:
        return {
            "model_dir": self.model_dir,
            "base_dir": self.base_dir,
            "kind": self.kind,
            "metric": self.metric,
            "forget_classes": list(self.forget_classes),
            "threshold": self.threshold,
            "start": dict(self.start),
            "relearn": [c.to_dict() for c in self.relearn],
            "membership": [m.to_dict() for m in self.membership],
            "audit": self.audit,
            "attacks": list(self.attacks),
            "paraphrase": [p.to_dict() for p in self.paraphrase],
            "inversion": [i.to_dict() for i in self.inversion],
            "adversarial": {
                "prompts": [r.to_dict() for r in self.adversarial],
                "overall": {
                    name: {"pre_attack_concept_rate": pre, "post_attack_concept_rate": post}
                    for name, (pre, post) in self.adversarial_rates().items()
                },
            },
        }

    def metrics(self) -> dict[str, float]:
        """Flat, namespaced headline numbers (``audit/...``) for MLflow and the bench."""
        out: dict[str, float] = {}
        for name, rate in self.start.items():
            out[f"audit/{name}/start_rate"] = rate
        for c in self.relearn:
            out[f"audit/relearn_{c.attack}/{c.model}/final_rate"] = c.rates[-1]
            if c.returned_at is not None:
                out[f"audit/relearn_{c.attack}/{c.model}/returned_at"] = float(c.returned_at)
        for m in self.membership:
            for side in ("forget", "retain", "unseen"):
                out[f"audit/mia/{m.model}/{side}_auc"] = getattr(m, side)
        for p in self.paraphrase:
            out[f"audit/paraphrase/{p.model}/concept_rate"] = p.paraphrase_rate
        for i in self.inversion:
            out[f"audit/inversion/{i.model}/concept_rate"] = i.rate
            out[f"audit/inversion/{i.model}/loss"] = i.loss
        for name, (pre, post) in self.adversarial_rates().items():
            out[f"audit/adversarial/{name}/pre_attack_rate"] = pre
            out[f"audit/adversarial/{name}/post_attack_rate"] = post
        return out


def write_report(report: AuditReport, out: Path) -> Path:
    """``out/report.json``, replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2))
    os.replace(tmp, path)
    return path


def relearn_rows(report: AuditReport) -> tuple[list[str], list[list[object]]]:
    """Columns and rows of the relearning table: the rate at each checkpoint."""
    steps = report.relearn[0].steps if report.relearn else ()
    cols = ["attack", "model", *[f"step {s}" for s in steps], "returned at"]
    rows = [
        [c.attack, c.model, *c.rates, "-" if c.returned_at is None else c.returned_at]
        for c in report.relearn
    ]
    return cols, rows


def membership_rows(report: AuditReport) -> tuple[list[str], list[list[object]]]:
    """Columns and rows of the membership-inference table."""
    cols = ["model", "forget AUC", "retain AUC", "unseen AUC", "samples"]
    rows = [[m.model, m.forget, m.retain, m.unseen, m.samples] for m in report.membership]
    return cols, rows


def prompt_rows(report: AuditReport) -> tuple[list[str], list[list[object]]]:
    """Columns and rows of the t2i table: paraphrase leakage and concept inversion."""
    cols = ["model", "erased prompts", "paraphrases", "inverted token", "anchor alone"]
    para = {p.model: p for p in report.paraphrase}
    inv = {i.model: i for i in report.inversion}
    rows = []
    for name in report.start:
        p, i = para.get(name), inv.get(name)
        rows.append(
            [
                name,
                report.start[name],
                "-" if p is None else p.paraphrase_rate,
                "-" if i is None else i.rate,
                "-" if i is None or i.anchor_rate is None else i.anchor_rate,
            ]
        )
    return cols, rows


def adversarial_rows(report: AuditReport) -> tuple[list[str], list[list[object]]]:
    """Columns and rows of the adversarial-prompt table: per model and forget prompt."""
    cols = ["model", "prompt", "adversarial prompt", "pre-attack", "post-attack (ASR)"]
    rows: list[list[object]] = [
        [r.model, r.prompt, r.adversarial, r.rate_before, r.rate_after] for r in report.adversarial
    ]
    for name, (pre, post) in report.adversarial_rates().items():
        rows.append([name, "(all)", "", pre, post])
    return cols, rows
