"""The text-to-image family (model kind ``t2i``): Stable-Diffusion-format pipelines
(UNet2DConditionModel, AutoencoderKL, a text encoder and tokenizer, a scheduler) whose
forget specs are prompts and whose forget rate is the concept rate.

The building blocks stay one layer down (:mod:`unlearn.models.t2i`,
:mod:`unlearn.metrics.t2i`); this folder holds the glue: the forget task
(:mod:`~unlearn.families.t2i.task`), the demo pipeline's pretraining
(:mod:`~unlearn.families.t2i.pretrain`) and the evaluation of a pipeline directory
(:mod:`~unlearn.families.t2i.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unlearn.config import MODEL_FAMILIES, Config, ForgetConfig
from unlearn.families.base import EvalReport, InstanceData, Setup
from unlearn.families.store import ASSETS
from unlearn.runtime import ProgressFn

#: the bench columns a t2i bench adds (its forget rate is the concept rate)
T2I_COLUMNS: dict[str, str] = {
    "paraphrase_rate": "paraphrase concept rate",
    "retain_accuracy": "retain accuracy",
}


class T2IFamily:
    """Text-to-image pipelines; forget specs are prompts (concept, anchor, paraphrases,
    retain prompts, or a memorised caption); the concept rate is the primary rate."""

    name = "t2i"
    kinds = MODEL_FAMILIES["t2i"]
    conditional_kinds = ("t2i",)
    description = "a text-to-image pipeline"
    #: the diffusers pipeline class of its saved models
    pipeline_class = "StableDiffusionPipeline"
    example_config = "configs/t2i_demo.yaml"
    #: the config ``unlearn eval`` uses on a pipeline directory when none is given
    default_config: Path | None = ASSETS / "t2i_demo.yaml"
    prompted = True
    #: samples per prompt and guidance decide its rates
    sections = ("t2i",)
    columns = T2I_COLUMNS
    #: a pipeline has no class coverage: its columns are the concept rates instead
    dropped_columns = ("coverage_kl",)
    attacks = ("relearn", "mia", "paraphrase", "inversion", "adversarial")
    attacked_rate = True
    #: ``bench --audit``'s columns: the concept rate after the relearning attacks and after
    #: the adversarial-prompt attack (no MIA column: the bench keeps no held-out latents)
    audit_columns: dict[str, str] = {  # noqa: RUF012 (read-only class table)
        "attacked_forget_rate": "concept rate after the relearning attack",
        "benign_forget_rate": "concept rate after benign fine-tuning",
        "adversarial_concept_rate": "post-attack concept rate (adversarial prompts)",
    }

    @property
    def result_type(self) -> type:
        from unlearn.metrics.t2i import T2IEvalResult

        return T2IEvalResult

    # -- models on disk ----------------------------------------------------------------------
    def owns_dir(self, path: Path) -> bool:
        from unlearn.models.t2i.io import PIPELINE_KINDS, is_pipeline_dir, pipeline_class

        # a pipeline of a class no family claims stays the t2i family's (its loader explains)
        kind = PIPELINE_KINDS.get(pipeline_class(path), "t2i") if is_pipeline_dir(path) else None
        return kind in self.kinds

    def owns_model(self, model: torch.nn.Module) -> bool:
        return getattr(model, "kind", None) in self.kinds

    def load(self, path: str | Path) -> torch.nn.Module:
        from unlearn.models.t2i import load_t2i

        return load_t2i(Path(path))

    def save(self, model: torch.nn.Module, path: str | Path) -> Path:
        from unlearn.models.t2i import save_t2i

        return save_t2i(model, Path(path).resolve(), merge_lora=model.lora_merge)

    # -- pretraining -------------------------------------------------------------------------
    def model_key(self, cfg: Config) -> str:
        from unlearn.families.t2i.pretrain import t2i_model_key

        return t2i_model_key(cfg)

    def train_base(self, cfg: Config, out: Path, progress: ProgressFn, force: bool) -> Path:
        from unlearn.families.t2i.pretrain import train_t2i

        return train_t2i(cfg, out, progress, force)  # the t2i pipeline and key

    # -- unlearning and evaluation -----------------------------------------------------------
    def load_task(self, cfg: Config, model: torch.nn.Module) -> Any:
        from unlearn.families.t2i.task import load_t2i_task

        return load_t2i_task(cfg, model, family=self)

    def base_dir(self, cfg: Config) -> Path | None:
        from unlearn.families.t2i.task import pipeline_dir

        return pipeline_dir(cfg, self)

    def make_unlearner(self, cfg: Config, method, agent, model=None, task=None) -> Setup:
        from unlearn.families.t2i.task import make_t2i_unlearner

        unl, model_dir, t2i = make_t2i_unlearner(cfg, method, agent, model, family=self)
        return Setup(cfg, unl, model_dir, t2i)

    def evaluate(self, model, classifier, cfg: Config, data, base_forget_rate=None):
        from unlearn.metrics.t2i import evaluate_t2i

        return evaluate_t2i(model, classifier, cfg, data)

    def evaluate_dir(
        self, cfg: Config, model_dir: Path, classifier_dir=None, out=None
    ) -> EvalReport:
        from unlearn.families.t2i.evaluate import evaluate_t2i_dir

        return evaluate_t2i_dir(cfg, model_dir, classifier_dir, out, family=self)

    def save_samples(self, cfg: Config, result, samples: torch.Tensor, out: Path, name: str):
        """One grid per prompt under ``<name>/`` and a row per prompt as ``<name>.png``."""
        import shutil

        from unlearn.metrics.t2i import save_prompt_grids

        grid = save_prompt_grids(result, samples, out / name, cfg.t2i.samples_per_prompt)
        shutil.copyfile(grid, out / f"{name}.png")
        return out / f"{name}.png"

    def samples_text(self, cfg: Config) -> str:
        return f"{cfg.t2i.samples_per_prompt} images per prompt"

    def result_from_dict(self, d: dict):
        return self.result_type(**{**d, "prompts": tuple(d["prompts"])})

    # -- attacks at a small budget -----------------------------------------------------------
    def attack_meter(self, cfg: Config, unlearner: Any):
        """The concept rate of the forget prompts (``audit.prompt_samples`` per prompt)."""
        from unlearn.metrics.meters import ConceptMeter, PromptParts

        data = unlearner.eval_data
        parts = PromptParts(data.spec, data.thresholds, None)
        return ConceptMeter(cfg, unlearner.classifier, parts, tuple(data.spec.prompts))

    def heldout(self, task: Any):
        return None

    # -- env and bench instances: one digit concept each -------------------------------------
    def instance_forget(self, forget: ForgetConfig, c: int) -> ForgetConfig:
        from unlearn.data.prompts import concept_instance_forget

        return concept_instance_forget(forget, c)

    def check_instance(self, cfg: Config, model: torch.nn.Module) -> None:
        from unlearn.data.prompts import prompt_spec

        prompt_spec(cfg.forget, model.tokenizer, cfg.eval.concept_measure)

    def instance_classes(self, task: Any) -> list[int]:
        from unlearn.data.captions import DIGIT_WORDS

        return list(range(len(DIGIT_WORDS)))

    def first_instance(self, task: Any, cfg: Config) -> InstanceData | None:
        # the unlearner was built on the first instance's concept (env_config)
        table = (list(task.model.prompts[1:]), task.model.anchor_id)
        return InstanceData(task.data.split, task.eval_data, table)

    def retarget(self, task: Any, cfg: Config, model: torch.nn.Module) -> InstanceData:
        from unlearn.families.t2i.task import retarget_t2i

        t = retarget_t2i(task, cfg, family=self)
        return InstanceData(
            t.data.split, t.eval_data, (list(t.model.prompts[1:]), t.model.anchor_id)
        )


T2I = T2IFamily()

__all__ = ["T2I", "T2I_COLUMNS", "T2IFamily"]
