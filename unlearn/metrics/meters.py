"""Meters: a model's forget rate (of forgotten classes, or of the outlier) or concept rate (of
a pipeline's forget prompts) on a small, seeded budget — what an attack tries to bring back.

They reuse the evaluation's definitions (``generate``, ``forget_rate``, ``outlier_rate``;
``generate_prompts`` and the concept measure) on fewer samples (``audit.num_samples``,
``audit.prompt_samples``), with the evaluation's fixed sampling seed, so one model always
measures the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from unlearn.config import Config
from unlearn.data import ForgetSplit
from unlearn.data.captions import AttributeThresholds
from unlearn.data.prompts import PromptSpec, shows
from unlearn.metrics.classes import forget_rate
from unlearn.metrics.evaluate import generate
from unlearn.metrics.outlier import outlier_rate
from unlearn.metrics.t2i import generate_prompts


@dataclass(frozen=True)
class ForgetMeter:
    """Generate ``cfg.audit.num_samples`` samples and count the forgotten ones.

    Args:
        cfg: the config (eval sampler, seed; audit sample count; outlier radius).
        classifier: the evaluation classifier (class forgetting).
        classes: forgotten classes; empty when the outlier is the target.
        outlier: the memorised outlier image, or ``None``.
        num_samples: samples per measurement; 0 = ``audit.num_samples``.
    """

    cfg: Config
    classifier: torch.nn.Module | None
    classes: tuple[int, ...]
    outlier: torch.Tensor | None
    num_samples: int = 0

    @property
    def name(self) -> str:
        """The metric's name: ``forget_rate`` (classes) or ``outlier_rate``."""
        return "forget_rate" if self.classes else "outlier_rate"

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        samples = generate(model, self.cfg, self.num_samples or self.cfg.audit.num_samples)
        if self.classes:
            probs, _ = self.classifier.to(samples.device).predict(samples)
            return forget_rate(probs, self.classes), samples
        return outlier_rate(samples, self.outlier, self.cfg.forget.outlier.radius), samples


@dataclass(frozen=True)
class PromptParts:
    """The prompt side of a pipeline audit.

    Args:
        spec: the validated forget / paraphrase / retain prompts.
        thresholds: the attribute thresholds of the training images (attribute concepts).
        held: held-out images split like the training data (latents, prompt ids).
    """

    spec: PromptSpec
    thresholds: AttributeThresholds
    held: ForgetSplit


@dataclass(frozen=True)
class ConceptMeter:
    """Generate ``audit.prompt_samples`` images per prompt of ``prompts``; the concept rate.

    The noise of each prompt is fixed by (``eval.seed``, its position), as in the evaluation.
    """

    cfg: Config
    classifier: torch.nn.Module
    parts: PromptParts
    prompts: tuple[str, ...]

    name = "concept_rate"

    def with_prompts(self, prompts: tuple[str, ...]) -> ConceptMeter:
        return dataclasses.replace(self, prompts=tuple(prompts))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        hit, samples = self._hits(model)
        return float(hit.float().mean()), samples

    @torch.no_grad()
    def per_prompt(self, model: torch.nn.Module) -> tuple[list[float], torch.Tensor]:
        """The concept rate of each prompt (in order) and the samples."""
        hit, samples = self._hits(model)
        return hit.float().view(len(self.prompts), -1).mean(1).tolist(), samples

    def _hits(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        t2i = dataclasses.replace(self.cfg.t2i, samples_per_prompt=self.cfg.audit.prompt_samples)
        samples = generate_prompts(
            model, dataclasses.replace(self.cfg, t2i=t2i), list(self.prompts)
        )
        probs, _ = self.classifier.to(samples.device).predict(samples)
        hit = shows(self.parts.spec.target, samples, None, self.parts.thresholds, probs)
        return hit, samples
