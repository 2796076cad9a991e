"""The image-to-image family (model kinds ``inpaint_ddpm`` and ``mae``): models that complete
a masked image — the centre (``i2i.task: inpaint``) or the border (``outpaint``) — whose
forget specs are classes and whose forget rate is the classifier accuracy of the forget
classes' completions.

The building blocks stay one layer down (:mod:`unlearn.models.i2i`, :mod:`unlearn.metrics.i2i`,
the ``i2i_*`` methods in :mod:`unlearn.methods.i2i`); this folder holds the glue: the forget
task (:mod:`~unlearn.families.i2i.task`), pretraining (:mod:`~unlearn.families.i2i.pretrain`)
and the evaluation of a saved model directory (:mod:`~unlearn.families.i2i.evaluate`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from unlearn.config import MODEL_FAMILIES, Config, ForgetConfig
from unlearn.families.base import EvalReport, InstanceData, Setup
from unlearn.families.store import ASSETS
from unlearn.runtime import ProgressFn

#: the bench columns an i2i bench adds (its forget rate is the forget completions' accuracy)
I2I_COLUMNS: dict[str, str] = {"retain_accuracy": "retain accuracy"}


class I2IFamily:
    """Image-completion models; forget specs are classes; completions of held-out forget
    and retain images are scored separately."""

    name = "i2i"
    kinds = MODEL_FAMILIES["i2i"]
    conditional_kinds: tuple[str, ...] = ()
    description = "an image-completion model"
    example_config = "configs/i2i_demo.yaml"
    #: the config ``unlearn eval`` uses on one of its directories when none is given
    default_config: Path | None = ASSETS / "i2i_demo.yaml"
    prompted = False
    #: the task, the mask and the number of completions decide its metrics
    sections = ("i2i",)
    columns = I2I_COLUMNS
    #: completions have no class coverage or likelihood
    dropped_columns = ("coverage_kl",)
    attacks = ("relearn", "mia")
    attacked_rate = True
    audit_columns: dict[str, str] = {  # noqa: RUF012 (read-only class table)
        "attacked_forget_rate": "forget accuracy after the relearning attack",
        "benign_forget_rate": "forget accuracy after benign fine-tuning",
        "mia_auc": "MIA AUC (reconstruction loss)",
    }

    @property
    def result_type(self) -> type:
        from unlearn.metrics.i2i import I2IEvalResult

        return I2IEvalResult

    # -- models on disk ----------------------------------------------------------------------
    def owns_dir(self, path: Path) -> bool:
        from unlearn.models.i2i import is_i2i_dir

        return is_i2i_dir(path)

    def owns_model(self, model: torch.nn.Module) -> bool:
        return getattr(model, "kind", None) in self.kinds

    def load(self, path: str | Path) -> torch.nn.Module:
        from unlearn.models.i2i import load_i2i

        return load_i2i(path)

    def save(self, model: torch.nn.Module, path: str | Path) -> Path:
        from unlearn.models.i2i import save_i2i

        return save_i2i(model, path)

    # -- pretraining -------------------------------------------------------------------------
    def model_key(self, cfg: Config) -> str:
        from unlearn.families.i2i.pretrain import i2i_model_key

        return i2i_model_key(cfg)

    def train_base(self, cfg: Config, out: Path, progress: ProgressFn, force: bool) -> Path:
        from unlearn.families.i2i.pretrain import train_i2i

        return train_i2i(cfg, out, progress, force)

    # -- unlearning and evaluation -----------------------------------------------------------
    def load_task(self, cfg: Config, model: torch.nn.Module) -> Any:
        from unlearn.families.i2i.task import load_i2i_task

        return load_i2i_task(cfg, model)

    def base_dir(self, cfg: Config) -> Path | None:
        from unlearn.families.i2i.task import i2i_base_dir

        return i2i_base_dir(cfg)

    def make_unlearner(self, cfg: Config, method, agent, model=None, task=None) -> Setup:
        from unlearn.families.i2i.task import make_i2i_unlearner

        return make_i2i_unlearner(cfg, method, agent, model, task)

    def evaluate(self, model, classifier, cfg: Config, data, base_forget_rate=None):
        from unlearn.metrics.i2i import evaluate_i2i

        return evaluate_i2i(model, classifier, cfg, data)

    def evaluate_dir(
        self, cfg: Config, model_dir: Path, classifier_dir=None, out=None
    ) -> EvalReport:
        from unlearn.families.i2i.evaluate import evaluate_i2i_dir

        return evaluate_i2i_dir(cfg, model_dir, classifier_dir, out)

    def save_samples(self, cfg: Config, result, samples: torch.Tensor, out: Path, name: str):
        """``<name>.png``: rows of masked input | completion | ground truth."""
        from unlearn.metrics.i2i import save_completion_grid

        return save_completion_grid(samples, out / f"{name}.png")

    def samples_text(self, cfg: Config) -> str:
        return f"{cfg.i2i.eval_images} completions each of forget and retain images"

    def result_from_dict(self, d: dict):
        return self.result_type(**{**d, "forget_classes": tuple(d["forget_classes"])})

    # -- attacks at a small budget -----------------------------------------------------------
    def attack_meter(self, cfg: Config, unlearner: Any):
        """The classifier accuracy of the forget images' completions."""
        from unlearn.metrics.i2i import CompletionMeter

        return CompletionMeter(cfg, unlearner.classifier, unlearner.eval_data)

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
        from unlearn.families.i2i.task import retarget_i2i

        t = retarget_i2i(task, cfg, model)
        return InstanceData(t.split, t.eval_data)


I2I = I2IFamily()

__all__ = ["I2I", "I2I_COLUMNS", "I2IFamily"]
