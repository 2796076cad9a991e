"""What a model family provides: the one protocol every family implements.

A family is the only place that knows what kind of model it holds. Code that works for every
family (the run and eval commands, the env, the tuners, the audit, the bench, the report)
asks the family of its config (:func:`unlearn.families.family_of`) and never compares
``model.kind`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from unlearn.config import Config, ForgetConfig
    from unlearn.data import ForgetSplit
    from unlearn.metrics.result import ModelEvaluation
    from unlearn.runtime import ProgressFn
    from unlearn.unlearner import Unlearner


@dataclass
class Setup:
    """Everything a driver needs to run (or reset) unlearning episodes.

    Args:
        cfg: the config the setup was built from.
        unlearner: the loop, with its model, method, agent, split and evaluation data.
        base_model_dir: where the base model came from (None for a model passed in).
        task: the family's forget task (data, split, evaluation data).
    """

    cfg: Config
    unlearner: Unlearner
    base_model_dir: Path | None
    task: Any


@dataclass(frozen=True)
class EvalReport:
    """An evaluation of a saved model directory and where its sample grid went."""

    model_dir: Path
    result: ModelEvaluation
    grid: Path

    def to_dict(self) -> dict:
        return {"model_dir": str(self.model_dir), "grid": str(self.grid), **self.result.to_dict()}


@dataclass(frozen=True)
class InstanceData:
    """What an env / bench instance switches in: its forget split, its evaluation data and,
    for a family whose labels are prompt ids, the prompt table and anchor id they index."""

    split: ForgetSplit
    eval_data: Any
    prompts: tuple[list[str], int] | None = None


class Family(Protocol):
    """A model family: how to load, save, pretrain, unlearn and evaluate its models.

    Attributes:
        name: the family's name (the registry key), e.g. ``image`` or ``t2i``.
        kinds: the ``model.kind`` values it serves.
        conditional_kinds: those of its kinds whose models take labels (classes or prompts).
        description: what one of its saved models is, for messages ("a text-to-image
            pipeline").
        example_config: a config of this family shipped in ``configs/``.
        default_config: the config ``unlearn eval`` uses on one of its directories when none
            is given (None: the command's default).
        result_type: the type of its evaluation results (a :class:`ModelEvaluation`).
        prompted: whether its models are conditioned on prompts (labels are prompt ids).
        sections: config sections beyond the shared ones that decide a base evaluation.
        columns: bench columns it adds (key -> title).
        dropped_columns: shared bench columns that do not apply to it.
        attacks: the ``unlearn audit`` attacks that apply, in the order they run.
        attacked_rate: whether the attacked forget rate (``bench --audit``,
            ``tune.objective``, ``env.attack_weight``) applies.
        audit_columns: the bench columns ``bench --audit`` adds (key -> title).
    """

    name: str
    kinds: tuple[str, ...]
    conditional_kinds: tuple[str, ...]
    description: str
    example_config: str
    default_config: Path | None
    result_type: type
    prompted: bool
    sections: tuple[str, ...]
    columns: Mapping[str, str]
    dropped_columns: tuple[str, ...]
    attacks: tuple[str, ...]
    attacked_rate: bool
    audit_columns: Mapping[str, str]

    # -- models on disk ----------------------------------------------------------------------
    def owns_dir(self, path: Path) -> bool:
        """Whether ``path`` holds a saved model of this family."""
        ...

    def owns_model(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` is one of this family's models."""
        ...

    def load(self, path: str | Path) -> torch.nn.Module:
        """Load a saved model (safetensors weights only)."""
        ...

    def save(self, model: torch.nn.Module, path: str | Path) -> Path:
        """Save ``model`` to ``path`` (safetensors weights), replaced atomically."""
        ...

    # -- pretraining -------------------------------------------------------------------------
    def model_key(self, cfg: Config) -> str:
        """The cache key of the demo base model ``cfg`` describes."""
        ...

    def train_base(self, cfg: Config, out: Path, progress: ProgressFn, force: bool) -> Path:
        """Train (or resume) the demo base model into ``out``; returns ``out``."""
        ...

    # -- unlearning --------------------------------------------------------------------------
    def load_task(self, cfg: Config, model: torch.nn.Module) -> Any:
        """The forget task of ``cfg`` on ``model`` (data, split, evaluation data)."""
        ...

    def base_dir(self, cfg: Config) -> Path | None:
        """Where ``cfg``'s base model lives (``model.pretrained``, cache, shipped), or None."""
        ...

    def make_unlearner(
        self,
        cfg: Config,
        method: Any,
        agent: Any,
        model: torch.nn.Module | None = None,
        task: Any = None,
    ) -> Setup:
        """The forget task and the :class:`~unlearn.unlearner.Unlearner` of ``cfg``."""
        ...

    def evaluate(
        self,
        model: torch.nn.Module,
        classifier: Any,
        cfg: Config,
        data: Any,
        base_forget_rate: float | None = None,
    ) -> tuple[ModelEvaluation, torch.Tensor]:
        """Sample, measure, score: the result and the samples."""
        ...

    def evaluate_dir(
        self,
        cfg: Config,
        model_dir: Path,
        classifier_dir: Path | None = None,
        out: Path | None = None,
    ) -> EvalReport:
        """Evaluate a saved model directory and write its metrics and sample grids."""
        ...

    def save_samples(
        self, cfg: Config, result: ModelEvaluation, samples: torch.Tensor, out: Path, name: str
    ) -> Path:
        """``out/<name>.png``, the samples of an evaluation as a grid."""
        ...

    def samples_text(self, cfg: Config) -> str:
        """How many samples an evaluation draws, in words."""
        ...

    # -- env and bench instances -------------------------------------------------------------
    def instance_forget(self, forget: ForgetConfig, c: int) -> ForgetConfig:
        """The forget specification of instance ``c``."""
        ...

    def check_instance(self, cfg: Config, model: torch.nn.Module) -> None:
        """ConfigError when ``cfg.forget`` (a named instance's) asks what ``model`` cannot
        forget or measure; cheap, before any run."""
        ...

    def instance_classes(self, task: Any) -> list[int]:
        """The instances ``task``'s data allows."""
        ...

    def first_instance(self, task: Any, cfg: Config) -> InstanceData | None:
        """What ``task`` was built on, when it is instance ``cfg``'s (no re-split needed)."""
        ...

    def retarget(self, task: Any, cfg: Config, model: torch.nn.Module) -> InstanceData:
        """The split and evaluation data of ``cfg``'s forget spec on ``task``'s data."""
        ...

    def result_from_dict(self, d: dict) -> ModelEvaluation:
        """A result back from its ``to_dict``."""
        ...

    # -- attacks at a small budget (bench --audit, tune.objective, env.attack_weight) ------
    def attack_meter(self, cfg: Config, unlearner: Any) -> Any:
        """What an attack on ``unlearner``'s model measures: a callable model -> (rate,
        samples) for its current forget target."""
        ...

    def heldout(self, task: Any) -> Any:
        """Images no model was trained on, for the bench's MIA AUC (None: no MIA column)."""
        ...


def check_result(result: object) -> ModelEvaluation:
    """``result`` itself, after checking that it satisfies :class:`ModelEvaluation`."""
    from unlearn.metrics.result import ModelEvaluation

    if not isinstance(result, ModelEvaluation):
        raise TypeError(f"{type(result).__name__} is not a ModelEvaluation")
    return result
