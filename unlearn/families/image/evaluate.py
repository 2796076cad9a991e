"""Evaluating a saved image model directory (``unlearn eval`` on ddpm, cond_ddpm, vpsde, vae)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError
from unlearn.families.base import EvalReport
from unlearn.families.store import ASSETS


def load_classifier(cfg: Config, classifier_dir: Path | None, model_key: str) -> torch.nn.Module:
    """The evaluation classifier: ``classifier_dir``, else the one pretrained for ``cfg``."""
    from unlearn.families.store import locate
    from unlearn.models import load_model

    if classifier_dir is None:
        _, classifier_dir = locate(cfg, model_key)
        if classifier_dir is None:
            raise ConfigError(
                "classifier: no evaluation classifier for this data config; run "
                "`unlearn pretrain` or pass --classifier"
            )
    clf = load_model(classifier_dir)
    if not hasattr(clf, "features"):
        raise ConfigError(f"classifier: {classifier_dir} is not an evaluation classifier")
    return clf


def default_out(cfg: Config, model_dir: Path) -> Path:
    """MODEL_DIR/eval; for a model shipped inside the package, WORKDIR/eval/NAME instead."""
    if model_dir.is_relative_to(ASSETS.resolve()):
        return cfg.workdir_path / "eval" / model_dir.parent.name / model_dir.name
    return model_dir / "eval"


def evaluate_image_dir(
    cfg: Config, model_dir: Path, classifier_dir: Path | None = None, out: Path | None = None
) -> EvalReport:
    """Load, check shapes against the data, evaluate, write the sample grid."""
    from unlearn.families.image.pretrain import image_model_key
    from unlearn.families.image.task import load_task
    from unlearn.metrics import evaluate, outlier_distances, save_distance_histogram, save_grid
    from unlearn.models import check_compatible, load_model
    from unlearn.runtime import resolve_device

    model = load_model(model_dir)
    task = load_task(cfg, model, require_forget=False)
    clf = load_classifier(cfg, classifier_dir, image_model_key(cfg))
    train = task.splits.train
    check_compatible(clf, train.channels, train.resolution, "classifier")
    dev = resolve_device(cfg.device)
    model.to(dev)
    result, samples = evaluate(model, clf, cfg, task.eval_data)
    out = Path(out).resolve() if out else default_out(cfg, model_dir)
    grid = save_grid(samples[:100], out / "samples.png", nrow=10)
    if task.outlier is not None:  # memorisation: how close the samples come to the outlier
        d = outlier_distances(samples, task.outlier)
        save_distance_histogram(d, cfg.forget.outlier.radius, out / "outlier_distances.png")
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    return EvalReport(model_dir, result, grid)
