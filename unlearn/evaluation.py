"""Evaluate a saved model directory (``unlearn eval``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError
from unlearn.metrics import (
    EvalResult,
    evaluate,
    outlier_distances,
    save_distance_histogram,
    save_grid,
)
from unlearn.models import check_compatible, load_model
from unlearn.runtime import resolve_device
from unlearn.task import load_task


@dataclass(frozen=True)
class EvalReport:
    """An evaluation and where its sample grid went."""

    model_dir: Path
    result: EvalResult
    grid: Path

    def to_dict(self) -> dict:
        return {"model_dir": str(self.model_dir), "grid": str(self.grid), **self.result.to_dict()}


def load_classifier(cfg: Config, classifier_dir: Path | None) -> torch.nn.Module:
    from unlearn.pretrain import locate

    if classifier_dir is None:
        _, classifier_dir = locate(cfg)
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
    from unlearn.pretrain import ASSETS

    if model_dir.is_relative_to(ASSETS.resolve()):
        return cfg.workdir_path / "eval" / model_dir.parent.name / model_dir.name
    return model_dir / "eval"


def evaluate_dir(
    cfg: Config, model_dir: Path, classifier_dir: Path | None = None, out: Path | None = None
) -> EvalReport:
    """Load, check shapes against the data, evaluate, write the sample grid."""
    model_dir = Path(model_dir).resolve()
    if cfg.model.kind == "t2i" or (model_dir / "model_index.json").is_file():
        return evaluate_t2i_dir(cfg, model_dir, classifier_dir, out)
    model = load_model(model_dir)
    task = load_task(cfg, model, require_forget=False)
    clf = load_classifier(cfg, classifier_dir)
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


def evaluate_t2i_dir(
    cfg: Config, model_dir: Path, classifier_dir: Path | None = None, out: Path | None = None
) -> EvalReport:
    """A text-to-image pipeline directory: concept / paraphrase / retain rates, FID, and
    one sample grid per prompt (``prompts.png`` has a row per prompt)."""
    from unlearn.metrics.t2i import evaluate_t2i, save_prompt_grids
    from unlearn.models.t2i import load_t2i
    from unlearn.t2i_task import load_t2i_task

    if cfg.model.kind != "t2i":
        raise ConfigError(
            f"model.kind: {str(model_dir)!r} is a text-to-image pipeline but the config's "
            f"model.kind is {cfg.model.kind!r}; use a t2i config (e.g. configs/t2i_demo.yaml)"
        )
    clf = load_classifier(cfg, classifier_dir) if classifier_dir else None
    task = load_t2i_task(cfg, load_t2i(model_dir), classifier=clf)
    dev = resolve_device(cfg.device)
    task.model.to(dev)
    task.classifier.to(dev)
    result, samples = evaluate_t2i(task.model, task.classifier, cfg, task.eval_data)
    out = Path(out).resolve() if out else default_out(cfg, model_dir)
    grid = save_prompt_grids(result, samples, out, cfg.t2i.samples_per_prompt)
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    return EvalReport(model_dir, result, grid)
