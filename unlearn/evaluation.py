"""Evaluate a saved model directory (``unlearn eval``): the config's family evaluates it."""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Config, ConfigError
from unlearn.families import EvalReport, family_of, family_of_dir
from unlearn.families.image.evaluate import default_out

__all__ = ["EvalReport", "default_out", "evaluate_dir"]


def evaluate_dir(
    cfg: Config, model_dir: Path, classifier_dir: Path | None = None, out: Path | None = None
) -> EvalReport:
    """Load, check shapes against the data, evaluate, write the sample grid(s)."""
    model_dir = Path(model_dir).resolve()
    family = family_of(cfg)
    found = family_of_dir(model_dir)
    if found is not None and found is not family and found.prompted:
        # a prompted family's directory is unmistakable; an image directory under another
        # family's config fails in that family's loader, naming what it expected
        raise ConfigError(
            f"model.kind: {str(model_dir)!r} is {found.description} but the config's "
            f"model.kind is {cfg.model.kind!r}; use a {found.name} config "
            f"(e.g. {found.example_config})"
        )
    return family.evaluate_dir(cfg, model_dir, classifier_dir, out)
