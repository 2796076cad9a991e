"""The image families: unconditional and class-conditional DDPMs, the VP-SDE and the VAE
(model kinds ``ddpm``, ``cond_ddpm``, ``vpsde``, ``vae``), trained on image datasets and
measured by the evaluation classifier."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from unlearn.config import MODEL_FAMILIES, Config, ForgetConfig
from unlearn.families.base import EvalReport, InstanceData, Setup
from unlearn.runtime import ProgressFn


class ImageFamily:
    """Diffusion models and VAEs on images; forget specs are classes, indices or an
    injected outlier; the evaluation classifier measures the forget rate."""

    name = "image"
    kinds = MODEL_FAMILIES["image"]
    conditional_kinds = ("cond_ddpm",)
    description = "an image model"
    example_config = "configs/demo.yaml"
    default_config: Path | None = None
    prompted = False
    sections: tuple[str, ...] = ()
    columns: dict[str, str] = {}  # noqa: RUF012 (read-only class table)
    dropped_columns: tuple[str, ...] = ()
    attacks = ("relearn", "mia")
    attacked_rate = True
    #: ``bench --audit``'s columns (:mod:`unlearn.audit.attacked`)
    audit_columns: dict[str, str] = {  # noqa: RUF012 (read-only class table)
        "attacked_forget_rate": "attacked forget rate",
        "benign_forget_rate": "forget rate after benign fine-tuning",
        "mia_auc": "MIA AUC",
    }

    @property
    def result_type(self) -> type:
        from unlearn.metrics.evaluate import EvalResult

        return EvalResult

    # -- models on disk ----------------------------------------------------------------------
    def owns_dir(self, path: Path) -> bool:
        p = Path(path)
        if (p / "model_index.json").is_file():  # a diffusers pipeline, not a UNet directory
            return False
        if (p / "unlearn.json").is_file():
            import json

            try:
                meta = json.loads((p / "unlearn.json").read_text())
            except (OSError, ValueError):
                return False
            return meta.get("family") in self.kinds
        return (p / "unet").is_dir() or (p / "config.json").is_file()

    def owns_model(self, model: torch.nn.Module) -> bool:
        return getattr(model, "kind", None) in self.kinds

    def load(self, path: str | Path) -> torch.nn.Module:
        from unlearn.models import load_model

        return load_model(path)

    def save(self, model: torch.nn.Module, path: str | Path) -> Path:
        from unlearn.models import save_model

        return save_model(model, path)

    # -- pretraining -------------------------------------------------------------------------
    def model_key(self, cfg: Config) -> str:
        from unlearn.families.image.pretrain import image_model_key

        return image_model_key(cfg)

    def train_base(self, cfg: Config, out: Path, progress: ProgressFn, force: bool) -> Path:
        from unlearn.families.image.pretrain import train_image

        return train_image(cfg, out, progress, force)

    # -- unlearning and evaluation -----------------------------------------------------------
    def load_task(self, cfg: Config, model: torch.nn.Module) -> Any:
        from unlearn.families.image.task import load_task

        return load_task(cfg, model)

    def base_dir(self, cfg: Config) -> Path | None:
        from unlearn.families.store import locate

        return locate(cfg, self.model_key(cfg))[0]

    def make_unlearner(self, cfg: Config, method, agent, model=None, task=None) -> Setup:
        from unlearn.families.image.task import make_image_unlearner

        return make_image_unlearner(cfg, method, agent, model, task)

    def evaluate(self, model, classifier, cfg: Config, data, base_forget_rate=None):
        from unlearn.metrics import evaluate

        return evaluate(model, classifier, cfg, data, base_forget_rate)

    def evaluate_dir(
        self, cfg: Config, model_dir: Path, classifier_dir=None, out=None
    ) -> EvalReport:
        from unlearn.families.image.evaluate import evaluate_image_dir

        return evaluate_image_dir(cfg, model_dir, classifier_dir, out)

    def save_samples(self, cfg: Config, result, samples: torch.Tensor, out: Path, name: str):
        from unlearn.metrics import save_grid

        return save_grid(samples[:100], out / f"{name}.png", nrow=10)

    def samples_text(self, cfg: Config) -> str:
        return f"{cfg.eval.num_samples} samples"

    def result_from_dict(self, d: dict):
        return self.result_type(**{**d, "forget_classes": tuple(d["forget_classes"])})

    # -- attacks at a small budget -----------------------------------------------------------
    def attack_meter(self, cfg: Config, unlearner: Any):
        """The forget rate of the forget classes (or of the outlier) on ``audit.num_samples``."""
        from unlearn.metrics.meters import ForgetMeter

        data = unlearner.eval_data
        classes = tuple(data.forget_classes) if data is not None else ()
        return ForgetMeter(cfg, unlearner.classifier, classes, unlearner.split.outlier)

    def heldout(self, task: Any):
        return task.splits.heldout

    # -- env and bench instances: one class each ---------------------------------------------
    def instance_forget(self, forget: ForgetConfig, c: int) -> ForgetConfig:
        return dataclasses.replace(forget, classes=(c,))

    def check_instance(self, cfg: Config, model: torch.nn.Module) -> None:
        return None  # the classes are checked against the data when the instance is split

    def instance_classes(self, task: Any) -> list[int]:
        return sorted(int(c) for c in task.splits.train.labels.unique() if int(c) >= 0)

    def first_instance(self, task: Any, cfg: Config) -> InstanceData | None:
        if task.cfg.forget != cfg.forget:
            return None
        return InstanceData(task.split, task.eval_data)

    def retarget(self, task: Any, cfg: Config, model: torch.nn.Module) -> InstanceData:
        from unlearn.families.image.task import retarget

        t = retarget(task, cfg, model)
        return InstanceData(t.split, t.eval_data)


IMAGE = ImageFamily()

__all__ = ["IMAGE", "ImageFamily"]
