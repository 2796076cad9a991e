"""Evaluating a saved text-to-image pipeline directory (``unlearn eval`` on model kind t2i)."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn.config import Config
from unlearn.families.base import EvalReport


def evaluate_t2i_dir(
    cfg: Config,
    model_dir: Path,
    classifier_dir: Path | None = None,
    out: Path | None = None,
    family=None,
) -> EvalReport:
    """A text-to-image pipeline directory: concept / paraphrase / retain rates, FID, and
    one sample grid per prompt (``prompts.png`` has a row per prompt)."""
    from unlearn.families.image.evaluate import default_out, load_classifier
    from unlearn.families.t2i.task import _family, load_t2i_task
    from unlearn.metrics.t2i import evaluate_t2i, save_prompt_grids
    from unlearn.runtime import resolve_device

    family = _family(family)
    clf = None
    if classifier_dir:
        clf = load_classifier(cfg, classifier_dir, family.model_key(cfg))
    task = load_t2i_task(cfg, family.load(model_dir), classifier=clf, family=family)
    dev = resolve_device(cfg.device)
    task.model.to(dev)
    task.classifier.to(dev)
    result, samples = evaluate_t2i(task.model, task.classifier, cfg, task.eval_data)
    out = Path(out).resolve() if out else default_out(cfg, model_dir)
    grid = save_prompt_grids(result, samples, out, cfg.t2i.samples_per_prompt)
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    return EvalReport(model_dir, result, grid)
