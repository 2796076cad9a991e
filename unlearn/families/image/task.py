"""The forget task of the image families (``ddpm``, ``cond_ddpm``, ``vpsde``, ``vae``):
config -> data, forget / retain split, evaluation data -> the unlearning loop.

The data pipeline — load splits, inject the memorised outlier, split forget / retain,
prepare the fixed evaluation data — and the checks that guard it exist in one place:

- :func:`load_task` — config -> :class:`ForgetTask` (data, split, evaluation data);
- :func:`make_image_unlearner` — config, method, agent (+ optionally a model or a task) ->
  :class:`~unlearn.families.base.Setup` (pretrained model and classifier, compatibility
  checks, device, :class:`~unlearn.unlearner.Unlearner`).

:func:`retarget` re-splits an existing task for another forget specification without
reloading the data (the env's instances).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from unlearn.config import Config
from unlearn.data import ForgetSplit, ImageData, Splits, inject_outlier, load_splits, split_forget
from unlearn.families.base import Setup
from unlearn.metrics import EvalData, prepare
from unlearn.unlearner import Unlearner


@dataclass(frozen=True)
class ForgetTask:
    """What must be forgotten, what must be kept, and how both are measured.

    Args:
        cfg: the config the task was built from (its ``forget`` section defines the split).
        splits: the dataset's train / held-out split, as loaded.
        train: the training data after outlier injection (``splits.train`` when none).
        outlier: the injected memorised image, or None.
        split: the forget / retain division of ``train``; None only for an evaluation
            without a forget specification.
        eval_data: the fixed evaluation data (reference set, proxy batches).
    """

    cfg: Config
    splits: Splits
    train: ImageData
    outlier: torch.Tensor | None
    split: ForgetSplit | None
    eval_data: EvalData


def has_forget_spec(cfg: Config) -> bool:
    """True when ``cfg.forget`` asks for anything: classes, indices or an injected outlier."""
    f = cfg.forget
    return bool(f.classes or f.indices or f.outlier.copies)


def load_task(cfg: Config, model: torch.nn.Module, *, require_forget: bool = True) -> ForgetTask:
    """Load splits -> inject the outlier -> split forget / retain -> prepare evaluation data.

    ``model`` fixes the shapes the data must match and the proxies' timesteps. With
    ``require_forget=False`` (evaluating a model on its own) an empty forget specification
    gives ``split=None`` instead of an error.
    """
    from unlearn.models import check_compatible

    splits = load_splits(cfg.data)
    check_compatible(model, splits.train.channels, splits.train.resolution, "model")
    train, outlier = inject_outlier(splits.train, cfg.forget)
    split = None
    if require_forget or has_forget_spec(cfg):
        split = split_forget(train, cfg.forget, outlier)
    return ForgetTask(cfg, splits, train, outlier, split, prepare(model, cfg, splits, split))


def retarget(task: ForgetTask, cfg: Config, model: torch.nn.Module) -> ForgetTask:
    """The same data split by ``cfg.forget`` instead (another env instance); no reload."""
    split = split_forget(task.train, cfg.forget, task.outlier)
    return dataclasses.replace(
        task, cfg=cfg, split=split, eval_data=prepare(model, cfg, task.splits, split)
    )


def make_image_unlearner(
    cfg: Config,
    method,
    agent,
    model: torch.nn.Module | None = None,
    task: ForgetTask | None = None,
) -> Setup:
    """The pretrained model and classifier, the forget task and the loop of an image model.

    ``model`` replaces the pretrained base model (its classifier is still loaded); ``task``
    reuses data already split for this config.
    """
    from unlearn.families.image.pretrain import image_model_key
    from unlearn.families.store import load_pretrained
    from unlearn.methods import check_compatible as method_fits
    from unlearn.runtime import resolve_device

    pre = load_pretrained(cfg, image_model_key(cfg))
    model = model or pre.model
    method_fits(method, model)
    task = task or load_task(cfg, model)
    dev = resolve_device(cfg.device)
    model.to(dev)
    pre.classifier.to(dev)
    unl = Unlearner(model, method, agent, task.split, cfg, dev, task.eval_data, pre.classifier)
    return Setup(cfg, unl, pre.paths.model_dir, task)
