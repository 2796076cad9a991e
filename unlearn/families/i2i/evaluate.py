"""Evaluating a saved image-completion model directory (``unlearn eval`` on inpaint_ddpm, mae):
completions of held-out forget and retain images, their metrics and their grid."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from unlearn.config import Config
from unlearn.families.base import EvalReport


def evaluate_i2i_dir(
    cfg: Config, model_dir: Path, classifier_dir: Path | None = None, out: Path | None = None
) -> EvalReport:
    """Load, check against the config's task and data, complete, score, write
    ``metrics.json`` and ``completions.png`` (masked input | completion | ground truth)."""
    from unlearn.families.i2i.pretrain import i2i_model_key
    from unlearn.families.i2i.task import load_i2i_task
    from unlearn.families.image.evaluate import default_out, load_classifier
    from unlearn.metrics.i2i import evaluate_i2i, save_completion_grid
    from unlearn.models import check_compatible
    from unlearn.models.i2i import load_i2i
    from unlearn.runtime import resolve_device

    model = load_i2i(model_dir)
    # the directory decides the kind: one config evaluates both kinds
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind=model.kind))
    task = load_i2i_task(cfg, model, require_forget=False)
    clf = load_classifier(cfg, classifier_dir, i2i_model_key(cfg))
    train = task.splits.train
    check_compatible(clf, train.channels, train.resolution, "classifier")
    dev = resolve_device(cfg.device)
    model.to(dev)
    clf.to(dev)
    result, rows = evaluate_i2i(model, clf, cfg, task.eval_data)
    out = Path(out).resolve() if out else default_out(cfg, model_dir)
    grid = save_completion_grid(rows, out / "completions.png")
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    return EvalReport(model_dir, result, grid)
