"""What an audit runs on: the unlearned model, its base model, the classifier and the data.

Everything is loaded and checked here, before any attack runs or any file is written: the
models' kind and image shape must match the config, a directory that is not an unlearning
output needs ``--base``, and the forget target must be measurable (classes or the outlier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from unlearn.audit.prompts import check_pair, held_split
from unlearn.config import Config, ConfigError
from unlearn.data import ForgetSplit, ImageData
from unlearn.families import family_of
from unlearn.methods.common import kind_name
from unlearn.metrics.meters import PromptParts
from unlearn.models import check_compatible, load_model

#: written by ``unlearn run`` beside the unlearned model (``.../unlearned/RUN/model``)
RUN_RESULT = "result.json"


@dataclass(frozen=True)
class AuditInputs:
    """The two models under audit and the data their attacks draw on.

    Args:
        model_dir: the unlearned model.
        base_dir: the model it was unlearned from.
        model, base: both, loaded (CPU, eval mode).
        classifier: the evaluation classifier (``None`` when only the outlier is forgotten).
        split: retain / forget training data (with the injected outlier, if any).
        heldout: images no model was trained on.
        from_run: whether ``model_dir`` is an ``unlearn run`` output.
        prompts: t2i only: the prompts, attribute thresholds and held-out latents
            (``split`` and ``heldout`` then hold latents labelled with prompt ids).
        meter: what the attacks measure, as the config's family defines it
            (:meth:`~unlearn.families.base.Family.attack_meter`).
    """

    model_dir: Path
    base_dir: Path
    model: torch.nn.Module
    base: torch.nn.Module
    classifier: torch.nn.Module | None
    split: ForgetSplit
    heldout: ImageData
    from_run: bool
    prompts: PromptParts | None = None
    meter: Any = None


def is_run_output(model_dir: Path) -> bool:
    """``unlearn run`` writes ``RUN/model`` beside ``RUN/result.json``."""
    return model_dir.name == "model" and (model_dir.parent / RUN_RESULT).is_file()


def _check_kind(model: torch.nn.Module, path: Path, cfg: Config) -> None:
    kind = kind_name(model)
    if kind != cfg.model.kind:
        raise ConfigError(
            f"model.kind: {str(path)!r} is a {kind} model but the config says "
            f"{cfg.model.kind!r}; set model.kind={kind} or audit a {cfg.model.kind} model"
        )


def load_inputs(cfg: Config, model_dir: Path, base_dir: Path | None = None) -> AuditInputs:
    """Load and validate everything an audit needs; raises ConfigError on bad input."""
    from unlearn.pretrain import locate

    model_dir = Path(model_dir).expanduser().resolve()
    if not model_dir.is_dir():
        raise ConfigError(f"MODEL_DIR: {str(model_dir)!r} does not exist or is not a directory")
    from_run = is_run_output(model_dir)
    if base_dir is None and not from_run:
        raise ConfigError(
            f"MODEL_DIR: {str(model_dir)!r} is not an unlearning output (no {RUN_RESULT} "
            "beside it); pass --base BASE_DIR with the model it was unlearned from"
        )
    model = load_model(model_dir)
    _check_kind(model, model_dir, cfg)
    if family_of(cfg).prompted:  # prompts, tokenizer and concept measure come with it
        return _load_prompted(cfg, model, model_dir, base_dir, from_run)
    if not (cfg.forget.classes or cfg.forget.outlier.copies):
        raise ConfigError(
            "forget: an audit measures a forget rate; set forget.classes or "
            "forget.outlier.copies (forget.indices alone has no rate to measure)"
        )
    task = family_of(cfg).load_task(cfg, model)  # checks the image shape against the data
    ch, res = task.train.channels, task.train.resolution
    found_base, clf_dir = locate(cfg)
    if base_dir is None:
        if found_base is None:
            raise ConfigError(
                "--base: no pretrained base model for this config; pass --base BASE_DIR"
            )
        base_dir = found_base
    base_dir = Path(base_dir).expanduser().resolve()
    base = load_model(base_dir)
    _check_kind(base, base_dir, cfg)
    check_compatible(base, ch, res, f"--base {str(base_dir)!r}")
    if hasattr(model, "set_mask"):  # a completion model's base completes the same region
        base.set_mask(model.task, model.mask_ratio)
    clf = None
    if cfg.forget.classes:
        if clf_dir is None:
            raise ConfigError(
                "classifier: no evaluation classifier for this data config; run "
                "`unlearn pretrain --config <your config>` first"
            )
        clf = load_model(clf_dir)
        check_compatible(clf, ch, res, "classifier")
    on = SimpleNamespace(eval_data=task.eval_data, classifier=clf, split=task.split)
    meter = family_of(cfg).attack_meter(cfg, on)
    return AuditInputs(
        model_dir,
        base_dir,
        model,
        base,
        clf,
        task.split,
        task.splits.heldout,
        from_run,
        meter=meter,
    )


def _load_prompted(
    cfg: Config, model, model_dir: Path, base_dir: Path | None, from_run: bool
) -> AuditInputs:
    """A prompted model (a pipeline) and its base: prompts checked against the tokenizer, the data's image size
    against the pipeline's, the base's shapes and VAE against the pipeline's."""
    family = family_of(cfg)
    task = family.load_task(cfg, model)  # prompts, resolution, classifier
    base_dir = Path(base_dir if base_dir is not None else family.base_dir(cfg)).expanduser()
    base = load_model(base_dir.resolve())
    _check_kind(base, base_dir, cfg)
    check_pair(model, base, f"--base {str(base_dir)!r}")
    base.set_prompts(model.prompts[1:])  # the same prompt ids on both sides
    parts = PromptParts(
        task.data.spec,
        task.data.thresholds,
        held_split(model, cfg, task.data.spec, task.data.thresholds),
    )
    empty = ImageData(torch.zeros(0), torch.zeros(0, dtype=torch.long), 0)
    return AuditInputs(
        model_dir, base_dir.resolve(), model, base, task.classifier, task.data.split, empty,
        from_run, parts,
    )  # fmt: skip
