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

from unlearn.audit.inputs import AuditInputs, load_inputs
from unlearn.audit.membership import membership, membership_sets
from unlearn.audit.meter import ForgetMeter
from unlearn.audit.relearn import ATTACKS, RelearnCurve, attack_set, relearn, returned_at
from unlearn.audit.report import AuditReport, write_report
from unlearn.config import Config
from unlearn.methods.common import kind_of
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
    inputs = load_inputs(cfg, model_dir, base_dir)
    return audit(cfg, inputs, Path(out).expanduser().resolve() if out else None, progress)


def audit(
    cfg: Config, inputs: AuditInputs, out: Path | None = None, progress: ProgressFn = no_progress
) -> AuditResult:
    """Run every attack on models already loaded (``unlearn audit``, and the bench's cells)."""
    from unlearn.metrics import save_grid
    from unlearn.tracking import Tracker

    a = cfg.audit
    classes = tuple(cfg.forget.classes)
    sets = membership_sets(
        inputs.split, inputs.heldout, classes, cfg.forget.outlier.radius, a
    )  # validated before any work: a too small set fails here
    attack_data = {name: attack_set(inputs.split, name, a) for name in ATTACKS}
    out = out or default_out(cfg, inputs)
    dev = resolve_device(cfg.device)
    models = {"base": inputs.base.to(dev), "unlearned": inputs.model.to(dev)}
    meter = ForgetMeter(cfg, inputs.classifier, classes, inputs.split.outlier)
    t0 = time.perf_counter()
    tracker = Tracker(cfg, run_name="audit", tags={"unlearn.audit": inputs.model_dir.name})
    status = "FAILED"
    try:
        tracker.log_params({"audit": cfg.to_dict()["audit"], "model_dir": str(inputs.model_dir)})
        start: dict[str, float] = {}
        for name, model in models.items():
            rate, samples = meter(model)
            start[name] = rate
            save_grid(samples[:64], out / f"{name}.png", nrow=8)
        threshold = a.return_fraction * start["base"]
        curves = []
        total = len(ATTACKS) * len(models)
        for attack in ATTACKS:
            for name, model in models.items():
                key = f"audit/relearn_{attack}/{name}/{meter.name}"
                tracker.log_metrics({key: start[name]}, step=0)

                def logged(step: int, rate: float, key: str = key) -> None:
                    tracker.log_metrics({key: rate}, step=step)

                steps, rates, samples = relearn(model, attack_data[attack], a, meter, dev, logged)
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
        for name, model in models.items():
            mia.append(membership(model, name, sets, a))
            progress("membership inference", len(mia), len(models))
        report = AuditReport(
            model_dir=str(inputs.model_dir),
            base_dir=str(inputs.base_dir),
            kind=kind_of(inputs.model),
            metric=meter.name,
            forget_classes=classes,
            threshold=threshold,
            start=start,
            relearn=tuple(curves),
            membership=tuple(mia),
            audit=cfg.to_dict()["audit"],
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
