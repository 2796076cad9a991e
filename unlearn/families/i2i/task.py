"""The forget task of the image-to-image family: config -> base model with its mask set,
data, forget / retain split (the retain set real or a proxy), evaluation data -> the loop.

- :func:`load_i2i_task` — config, model -> :class:`I2ITask`;
- :func:`make_i2i_unlearner` — config, method, agent -> :class:`~unlearn.families.base.Setup`;
- :func:`retarget_i2i` — the same data split for another forget specification (env / bench
  instances), without reloading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError
from unlearn.data import ForgetSplit, ImageData, Splits, load_splits, split_forget
from unlearn.families.base import Setup
from unlearn.metrics.i2i import I2IEvalData, prepare_i2i

#: ``forget.retain_source`` values that are not folders
RETAIN_SOURCES = ("retain", "digits")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class I2ITask:
    """What must be forgotten, what is kept (``split.retain``: the real retain images or the
    proxy), and the held-out images evaluations complete."""

    cfg: Config
    splits: Splits
    split: ForgetSplit | None
    eval_data: I2IEvalData

    @property
    def train(self) -> ImageData:
        """The training images (the audit checks shapes against them)."""
        return self.splits.train


def check_task(cfg: Config, model: torch.nn.Module) -> None:
    """The model must be of ``model.kind`` and trained for ``i2i.task``; sets its mask."""
    kind = getattr(model, "kind", type(model).__name__)
    if kind != cfg.model.kind:
        raise ConfigError(
            f"model.kind: {cfg.model.kind!r} does not match the model, which is {kind!r}"
        )
    if cfg.i2i.task not in model.tasks:
        raise ConfigError(
            f"i2i.task: {cfg.i2i.task!r} is not allowed for this model; it was trained for "
            f"{', '.join(model.tasks)}"
        )
    model.set_mask(cfg.i2i.task, cfg.i2i.mask_ratio)


def _proxy_digits(channels: int, resolution: int) -> ImageData:
    """scikit-learn's 1,797 8x8 digits in [-1, 1], resized to ``resolution``."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1)
    return ImageData(x, torch.as_tensor(d.target, dtype=torch.long), 10)


def _proxy_folder(path: Path, ref: str, channels: int, resolution: int) -> ImageData:
    """Every image file of ``path``; each must be ``resolution`` pixels square."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"forget.retain_source: {ref!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    out = []
    for f in files:
        try:
            img = Image.open(f)
            img = img.convert("L" if channels == 1 else "RGB")
        except OSError as e:
            raise ConfigError(
                f"forget.retain_source: {str(f)!r} is not a readable image ({e})"
            ) from None
        if img.size != (resolution, resolution):
            raise ConfigError(
                f"forget.retain_source: {str(f)!r} is {img.size[0]}x{img.size[1]} pixels; "
                f"expected {resolution}x{resolution} (the model's size)"
            )
        a = torch.as_tensor(np.asarray(img, dtype=np.float32)) / 255.0
        out.append(a[None] if channels == 1 else a.permute(2, 0, 1))
    x = torch.stack(out) * 2 - 1
    return ImageData(x, torch.full((len(x),), -1, dtype=torch.long), 10)


def retain_data(cfg: Config, real: ImageData, channels: int, resolution: int) -> ImageData:
    """``forget.retain_source``: the real retain images, or a proxy retain set."""
    ref = cfg.forget.retain_source
    if ref == "retain":
        return real
    if ref == "digits":
        return _proxy_digits(channels, resolution)
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"forget.retain_source: {ref!r} is not allowed; expected retain, digits or an "
            "existing folder of images"
        )
    return _proxy_folder(path, ref, channels, resolution)


def _split(cfg: Config, splits: Splits, model) -> ForgetSplit:
    split = split_forget(splits.train, cfg.forget, None)
    retain = retain_data(cfg, split.retain, model.channels, model.resolution)
    return dataclasses.replace(split, retain=retain)


def load_i2i_task(cfg: Config, model: torch.nn.Module, *, require_forget: bool = True) -> I2ITask:
    """Check the model against the config, load the data, split, prepare the evaluation."""
    from unlearn.models import check_compatible

    check_task(cfg, model)
    splits = load_splits(cfg.data)
    check_compatible(model, splits.train.channels, splits.train.resolution, "model")
    split = None
    if require_forget or cfg.forget.classes or cfg.forget.indices:
        split = _split(cfg, splits, model)
    forget_train = None if split is None else split.forget
    return I2ITask(cfg, splits, split, prepare_i2i(model, cfg, splits.heldout, forget_train))


def retarget_i2i(task: I2ITask, cfg: Config, model: torch.nn.Module) -> I2ITask:
    """The same data split by ``cfg.forget`` instead (another env instance); no reload."""
    split = _split(cfg, task.splits, model)
    return dataclasses.replace(
        task,
        cfg=cfg,
        split=split,
        eval_data=prepare_i2i(model, cfg, task.splits.heldout, split.forget),
    )


def i2i_base_dir(cfg: Config) -> Path | None:
    """``model.pretrained`` when given (a saved i2i model), else the cached or shipped base
    model of ``cfg``."""
    from unlearn.families.i2i.pretrain import i2i_model_key
    from unlearn.families.store import locate, resolve_pretrained

    if cfg.model.pretrained:
        return Path(resolve_pretrained(cfg.model.pretrained)).expanduser()
    return locate(cfg, i2i_model_key(cfg))[0]


def load_base(cfg: Config):
    """The base model and the evaluation classifier of ``cfg`` and where the model lives."""
    from unlearn.families.i2i.pretrain import i2i_model_key
    from unlearn.families.store import load_pretrained, locate
    from unlearn.models.i2i import load_i2i
    from unlearn.models.io import load_model

    if cfg.model.pretrained:
        path = i2i_base_dir(cfg)
        model = load_i2i(path)
        check_task(cfg, model)
        clf_dir = locate(cfg, i2i_model_key(cfg))[1]
        if clf_dir is None:
            raise ConfigError(
                "classifier: no evaluation classifier for this data config; run "
                "`unlearn pretrain --config <your config>` first"
            )
        return model, load_model(clf_dir), path
    pre = load_pretrained(cfg, i2i_model_key(cfg))
    check_task(cfg, pre.model)
    return pre.model, pre.classifier, pre.paths.model_dir


def make_i2i_unlearner(
    cfg: Config,
    method,
    agent,
    model: torch.nn.Module | None = None,
    task: I2ITask | None = None,
) -> Setup:
    """The base model (or ``model``) and classifier, the forget task and the loop."""
    from unlearn.methods import check_compatible as method_fits
    from unlearn.runtime import resolve_device
    from unlearn.unlearner import Unlearner

    base, clf, model_dir = load_base(cfg)
    model = model or base
    method_fits(method, model)
    task = task or load_i2i_task(cfg, model)
    check_task(cfg, model)
    dev = resolve_device(cfg.device)
    model.to(dev)
    clf.to(dev)
    unl = Unlearner(model, method, agent, task.split, cfg, dev, task.eval_data, clf)
    return Setup(cfg, unl, model_dir, task)
