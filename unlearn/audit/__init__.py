"""Audits of unlearned models: relearning attacks and loss-based membership inference.

Forgetting is checked against what undoes it (docs/audit.md): fine-tuning a copy on
retain data and on a few forget samples (``relearn``), and whether forget samples still
look like training data to a loss-based attack (``membership``). ``run_audit`` runs both on
an unlearned model beside its base model and writes a deterministic JSON report.
"""

from unlearn.audit.adversarial import AdversarialPrompt, attack_prompts
from unlearn.audit.attacked import AttackedRates, attacked_rates
from unlearn.audit.inputs import AuditInputs, is_run_output, load_inputs
from unlearn.audit.membership import MembershipAUC, attack_losses, auc, membership
from unlearn.audit.relearn import RelearnCurve, checkpoints, relearn
from unlearn.audit.report import (
    AuditReport,
    PromptRates,
    adversarial_rows,
    membership_rows,
    prompt_rows,
    relearn_rows,
)
from unlearn.audit.run import AuditResult, audit, run_audit
from unlearn.metrics.meters import ForgetMeter

__all__ = [
    "AdversarialPrompt",
    "AttackedRates",
    "AuditInputs",
    "AuditReport",
    "AuditResult",
    "ForgetMeter",
    "MembershipAUC",
    "PromptRates",
    "RelearnCurve",
    "attack_prompts",
    "adversarial_rows",
    "attack_losses",
    "attacked_rates",
    "audit",
    "auc",
    "checkpoints",
    "is_run_output",
    "load_inputs",
    "membership",
    "membership_rows",
    "prompt_rows",
    "relearn",
    "relearn_rows",
    "run_audit",
]
