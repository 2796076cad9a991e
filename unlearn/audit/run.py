"""``unlearn audit``: relearning attacks and membership inference on an unlearned model.

Order of work: load and validate everything (bad input fails before any file is written),
measure both models once, run each relearning attack on each model (a sample grid after
each), membership inference on each model, then write ``report.json`` and log it all to
MLflow through :class:`unlearn.tracking.Tracker`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.audit.inputs import AuditInputs, load_inputs
from unlearn.audit.membership import membership, membership_sets
from unlearn.audit.relearn import ATTACKS, RelearnCurve, attack_set, relearn, returned_at
from unlearn.audit.report import AuditReport, PromptRates, write_report
from unlearn.config import Config, ConfigError
from unlearn.families import family_of_kind
from unlearn.methods.common import kind_name
from unlearn.metrics.meters import ForgetMeter
from unlearn.runtime import ProgressFn, no_progress, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditResult:
    """The report, where it was written, how long it took and its MLflow run."""

    report: AuditReport
    path: Path
    wall_time: float
    run_id: str | None


def default_out(cfg: Config, inputs: AuditInputs) -> Path:
    """RUN/audit beside an ``unlearn run`` output; MODEL_DIR/audit otherwise (shipped models:
    WORKDIR/audit/NAME, the package stays read-only)."""
    from unlearn.pretrain import ASSETS

    if inputs.from_run:
        return inputs.model_dir.parent / "audit"
    if inputs.model_dir.is_relative_to(ASSETS.resolve()):
        return cfg.workdir_path / "audit" / inputs.model_dir.parent.name
    return inputs.model_dir / "audit"


def run_audit(
    cfg: Config,
    model_dir: Path,
    base_dir: Path | None = None,
    out: Path | None = None,
    progress: ProgressFn = no_progress,
) -> AuditResult:
    """Audit ``model_dir`` beside its base model; returns the report (also on disk)."""
    chosen_attacks(cfg, cfg.model.kind)  # before any model loads
    inputs = load_inputs(cfg, model_dir, base_dir)
    return audit(cfg, inputs, Path(out).expanduser().resolve() if out else None, progress)


def chosen_attacks(cfg: Config, kind: str) -> tuple[str, ...]:
    """``audit.attacks`` checked against the model family's (its ``attacks``, in the order
    they run; empty: every one that applies)."""
    allowed = family_of_kind(kind).attacks
    if not cfg.audit.attacks:
        return tuple(a for a in allowed if a != "paraphrase" or cfg.forget.paraphrases)
    for a in cfg.audit.attacks:
        if a not in allowed:
            text = ("inversion", "paraphrase", "adversarial")
            why = "needs a model with a text encoder" if a in text else ""
            raise ConfigError(
                f"audit.attacks: {a!r} {why or 'does not apply'}; a {kind} model has none: "
                f"allowed for {kind}: {', '.join(allowed)}"
            )
    if "paraphrase" in cfg.audit.attacks and not cfg.forget.paraphrases:
        raise ConfigError(
            "audit.attacks: 'paraphrase' needs held-out prompts of the concept in "
            "forget.paraphrases (empty)"
        )
    return tuple(a for a in allowed if a in cfg.audit.attacks)


@dataclass(frozen=True)
class _Plan:
    """What one audit runs, validated before any work."""

    attacks: tuple[str, ...]
    meter: Any
    sets: Any
    attack_data: dict


def _plan(cfg: Config, inputs: AuditInputs) -> _Plan:
    a = cfg.audit
    attacks = chosen_attacks(cfg, kind_name(inputs.model))
    if inputs.prompts is not None:
        from unlearn.audit.prompts import prompt_membership_sets
        from unlearn.metrics.meters import ConceptMeter

        meter = ConceptMeter(cfg, inputs.classifier, inputs.prompts, inputs.prompts.spec.prompts)
        sets = (
            prompt_membership_sets(
                inputs.split,
                inputs.prompts.held,
                a,
                memorised=inputs.prompts.spec.target[0] == "copy",
            )
            if "mia" in attacks
            else None
        )
    else:
        classes = tuple(cfg.forget.classes)
        meter = inputs.meter or ForgetMeter(cfg, inputs.classifier, classes, inputs.split.outlier)
        sets = (
            membership_sets(inputs.split, inputs.heldout, classes, cfg.forget.outlier.radius, a)
            if "mia" in attacks
            else None
        )
    if "adversarial" in attacks:
        from unlearn.audit.adversarial import check_adversarial

        check_adversarial(inputs.model, tuple(meter.prompts), a)
    data = {}
    if "relearn" in attacks or "inversion" in attacks:
        data = {name: attack_set(inputs.split, name, a) for name in ATTACKS}
    return _Plan(attacks, meter, sets, data)


def audit(
    cfg: Config, inputs: AuditInputs, out: Path | None = None, progress: ProgressFn = no_progress
) -> AuditResult:
    """Run every attack on models already loaded (``unlearn audit``, and the bench's cells)."""
    from unlearn.metrics import save_grid
    from unlearn.tracking import Tracker

    a = cfg.audit
    plan = _plan(cfg, inputs)  # a too small or empty set fails here, before any work
    meter = plan.meter
    out = out or default_out(cfg, inputs)
    dev = resolve_device(cfg.device)
    models = {"base": inputs.base.to(dev), "unlearned": inputs.model.to(dev)}
    t0 = time.perf_counter()
    tracker = Tracker(cfg, run_name="audit", tags={"unlearn.audit": inputs.model_dir.name})
    status = "FAILED"
    try:
        tracker.log_params({"audit": cfg.to_dict()["audit"], "model_dir": str(inputs.model_dir)})
        start: dict[str, float] = {}
        per_prompt: dict[str, list[float]] = {}  # the adversarial attack's pre-attack rates
        for name, model in models.items():
            if "adversarial" in plan.attacks:
                per_prompt[name], samples = meter.per_prompt(model)
                rate = sum(per_prompt[name]) / len(per_prompt[name])
            else:
                rate, samples = meter(model)
            start[name] = rate
            save_grid(samples[:64], out / f"{name}.png", nrow=8)
        threshold = a.return_fraction * start["base"]
        curves = []
        if "relearn" in plan.attacks:
            total = len(ATTACKS) * len(models)
            for attack in ATTACKS:
                for name, model in models.items():
                    key = f"audit/relearn_{attack}/{name}/{meter.name}"
                    tracker.log_metrics({key: start[name]}, step=0)

                    def logged(step: int, rate: float, key: str = key) -> None:
                        tracker.log_metrics({key: rate}, step=step)

                    steps, rates, samples = relearn(
                        model, plan.attack_data[attack], a, meter, dev, logged
                    )
                    grid = f"relearn-{attack}-{name}.png"
                    save_grid(samples[:64], out / grid, nrow=8)
                    steps, rates = [0, *steps], [start[name], *rates]
                    curves.append(
                        RelearnCurve(
                            attack,
                            name,
                            tuple(steps),
                            tuple(rates),
                            returned_at(steps, rates, threshold),
                            grid,
                        )
                    )
                    progress("relearning attacks", len(curves), total)
        mia = []
        if "mia" in plan.attacks:
            for name, model in models.items():
                mia.append(membership(model, name, plan.sets, a))
                progress("membership inference", len(mia), len(models))
        paraphrase = []
        if "paraphrase" in plan.attacks:
            para = meter.with_prompts(inputs.prompts.spec.paraphrases)
            for name, model in models.items():
                rate, samples = para(model)
                save_grid(samples[:64], out / f"paraphrase-{name}.png", nrow=8)
                paraphrase.append(PromptRates(name, start[name], rate, f"paraphrase-{name}.png"))
        inversion = []
        if "inversion" in plan.attacks:
            inversion = _inversions(cfg, inputs, plan, models, out, dev, progress)
        adversarial = []
        if "adversarial" in plan.attacks:
            adversarial = _adversarial(cfg, inputs, plan, models, per_prompt, out, dev, progress)
        report = AuditReport(
            model_dir=str(inputs.model_dir),
            base_dir=str(inputs.base_dir),
            kind=kind_name(inputs.model),
            metric=meter.name,
            forget_classes=tuple(cfg.forget.classes),
            threshold=threshold,
            start=start,
            relearn=tuple(curves),
            membership=tuple(mia),
            audit=cfg.to_dict()["audit"],
            attacks=plan.attacks,
            paraphrase=tuple(paraphrase),
            inversion=tuple(inversion),
            adversarial=tuple(adversarial),
        )
        path = write_report(report, out)
        wall = time.perf_counter() - t0
        tracker.log_metrics({**report.metrics(), "perf/audit_wall_time": wall})
        for f in sorted(out.glob("*.png")) + [path]:
            tracker.log_artifact(f, "audit")
        status = "FINISHED"
        log.info("audit of %s written to %s (%.1fs)", inputs.model_dir, path, wall)
        return AuditResult(report, path, wall, tracker.run_id)
    finally:
        tracker.end(status)


def _inversions(cfg, inputs, plan, models, out, dev, progress) -> list:
    """Textual inversion on each model; the recovered concept rate of its prompt."""
    from unlearn.audit.inversion import InversionResult, inversion_prompt, invert
    from unlearn.metrics import save_grid

    anchor = cfg.forget.anchor
    prompt = inversion_prompt(anchor)
    results = []
    for name, model in models.items():
        inv, loss = invert(model, plan.attack_data["forget"], anchor, cfg.audit, dev)
        rate, samples = plan.meter.with_prompts((prompt,))(inv)
        anchor_rate = plan.meter.with_prompts((anchor,))(model)[0] if anchor else None
        grid = f"inversion-{name}.png"
        save_grid(samples[:64], out / grid, nrow=8)
        results.append(
            InversionResult(name, prompt, cfg.audit.inversion_steps, loss, rate, anchor_rate, grid)
        )
        progress("concept inversion", len(results), len(models))
    return results


def _adversarial(cfg, inputs, plan, models, pre, out, dev, progress) -> list:
    """The adversarial-prompt attack on each model, judged by that model (``pre``: each
    model's concept rate per forget prompt, measured once); a grid each."""
    from unlearn.audit.adversarial import attack_prompts
    from unlearn.metrics import save_grid

    rows = []
    for i, (name, model) in enumerate(models.items()):
        found, samples = attack_prompts(
            name, model, plan.meter, inputs.split.forget, cfg.audit, dev, pre[name]
        )
        save_grid(samples[:64], out / f"adversarial-{name}.png", nrow=cfg.audit.prompt_samples)
        rows.extend(found)
        progress("adversarial prompts", i + 1, len(models))
    return rows
