"""Memorised-caption figures of a text-to-image pipeline: how often a prompt's images
reproduce one training image.

A generated image reproduces the image when its RMS pixel distance to it is at most
``t2i.memorise.radius`` (the rule of :mod:`unlearn.metrics.outlier`). The memorised
caption's rate next to an ordinary caption's rate (of the same digit) says whether the
pipeline memorised the pair rather than the digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import Config
from unlearn.metrics.outlier import outlier_distances


@dataclass(frozen=True)
class PromptReproduction:
    """One prompt's images against the memorised image: the fraction within the radius and
    the quartiles of their distances."""

    prompt: str
    rate: float
    distance_quartiles: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "rate": self.rate,
            "distance_quartiles": self.distance_quartiles,
        }


def prompt_reproduction(
    model: torch.nn.Module, cfg: Config, image: torch.Tensor, prompts: list[str]
) -> list[PromptReproduction]:
    """``t2i.samples_per_prompt`` images of each prompt (the evaluation's seeded sampler)
    measured against ``image`` at ``t2i.memorise.radius``."""
    from unlearn.metrics.t2i import generate_prompts

    n, radius = cfg.t2i.samples_per_prompt, cfg.t2i.memorise.radius
    d = outlier_distances(generate_prompts(model, cfg, prompts), image)
    out = []
    for p, dp in zip(prompts, d.split(n), strict=True):
        q = torch.quantile(dp, torch.tensor([0.25, 0.5, 0.75])).tolist()
        out.append(PromptReproduction(p, float((dp <= radius).float().mean()), tuple(q)))
    return out
