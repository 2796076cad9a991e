"""Text-to-image metrics: concept rate on the erased prompts and on held-out paraphrases,
retain accuracy, FID of retain-prompt samples against held-out images, per-prompt grids.

Images are generated with classifier-free-guided DDIM (``t2i.guidance``,
``eval.sampler_steps``), ``t2i.samples_per_prompt`` per prompt. Each prompt's starting
noise comes from its own generator seeded by (``eval.seed``, prompt position), so the
numbers are the same for a seed however the prompts are batched. The concept is decided by
the data's evaluation classifier and measured attributes, or with
``eval.concept_measure=clip`` by CLIP zero-shot (:mod:`unlearn.metrics.clip`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from unlearn.config import Config
from unlearn.data.captions import AttributeThresholds, concept_of, slant, thickness
from unlearn.data.datasets import ImageData
from unlearn.data.prompts import PromptSpec, shows
from unlearn.metrics.fid import frechet_distance
from unlearn.metrics.proxies import ProxyBatch, proxy_losses

T2I_METRIC_KEYS = (
    "concept_rate",
    "paraphrase_concept_rate",
    "retain_accuracy",
    "fid",
    "proxy_retain",
    "proxy_forget",
)

#: the columns of a results table of a text-to-image model
T2I_TABLE_KEYS = ("concept_rate", "paraphrase_concept_rate", "retain_accuracy", "fid")


@dataclass(frozen=True)
class T2IEvalData:
    """Fixed reference data of a t2i evaluation.

    ``reference``: held-out real images not showing the concept (FID); ``proxy_*``: fixed-
    noise latent batches labelled with their prompt ids (the per-step proxies).
    """

    spec: PromptSpec
    thresholds: AttributeThresholds
    reference: ImageData
    proxy_retain: ProxyBatch
    proxy_forget: ProxyBatch


@dataclass(frozen=True)
class T2IEvalResult:
    """The t2i metrics of one model; ``per_prompt`` maps each prompt to the fraction of its
    images that show what it asks for (the concept, for erased prompts and paraphrases);
    ``thickness`` and ``slant``: the mean measured attribute of each prompt's images."""

    num_samples: int
    concept: str
    concept_rate: float
    paraphrase_concept_rate: float | None
    retain_accuracy: float
    fid: float
    proxy_retain: float
    proxy_forget: float
    per_prompt: dict[str, float] = field(default_factory=dict)
    prompts: tuple[str, ...] = ()
    thickness: dict[str, float] = field(default_factory=dict)
    slant: dict[str, float] = field(default_factory=dict)

    @property
    def forget_rate(self) -> float:
        """The concept rate, under the name the drivers use for every family."""
        return self.concept_rate

    @property
    def primary_name(self) -> str:
        return "concept_rate"

    @property
    def primary_rate(self) -> float:
        return self.concept_rate

    #: the attributes a results table shows, in order (a class attribute: drivers read it
    #: from the family's result type before any evaluation)
    table_keys: ClassVar[tuple[str, ...]] = T2I_TABLE_KEYS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat, namespaced numbers; ``forget_rate`` repeats the concept rate under the name
        the drivers (tune objective, bench cells, the env's final reward) read for every
        family."""
        out = {
            f"{prefix}{k}": float(getattr(self, k))
            for k in T2I_METRIC_KEYS
            if getattr(self, k) is not None
        }
        out[f"{prefix}forget_rate"] = float(self.concept_rate)
        return out


def prepare_t2i(
    model: torch.nn.Module,
    cfg: Config,
    spec: PromptSpec,
    thresholds: AttributeThresholds,
    heldout: ImageData,
    retain_latents: ImageData,
    forget_latents: ImageData,
) -> T2IEvalData:
    """Build the fixed reference data once (reused by every evaluation of a run)."""
    s, n = cfg.eval.seed, cfg.eval.proxy_batch
    keep = ~shows(spec.target, heldout.images, heldout.labels, thresholds)
    return T2IEvalData(
        spec=spec,
        thresholds=thresholds,
        reference=heldout.subset(torch.nonzero(keep).flatten()),
        proxy_retain=ProxyBatch.make(model, retain_latents, n, s + 1),
        proxy_forget=ProxyBatch.make(model, forget_latents, n, s + 2),
    )


@torch.no_grad()
def generate_prompts(model, cfg: Config, prompts: list[str]) -> torch.Tensor:
    """``t2i.samples_per_prompt`` images per prompt, grouped by prompt, deterministic."""
    n = cfg.t2i.samples_per_prompt
    shape = (n, model.channels, model.resolution, model.resolution)
    noise = torch.cat(
        [
            torch.randn(shape, generator=torch.Generator().manual_seed(cfg.eval.seed * 1009 + i))
            for i in range(len(prompts))
        ]
    )
    was = model.training
    model.eval()
    # each prompt encoded once (the text encoder is frozen), repeated for its n samples
    emb = model.encode_cond(prompts).repeat_interleave(n, 0)
    out = []
    b = cfg.eval.batch_size
    for i in range(0, len(emb), b):
        z = model.sample_latents(
            emb[i : i + b], cfg.eval.sampler_steps, cfg.t2i.guidance, latents=noise[i : i + b]
        )
        out.append(model.decode(z).cpu())
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def evaluate_t2i(
    model: torch.nn.Module, classifier: torch.nn.Module, cfg: Config, data: T2IEvalData
) -> tuple[T2IEvalResult, torch.Tensor]:
    """Sample every prompt, classify and measure; returns the result and the samples
    (``samples_per_prompt`` consecutive images per prompt of ``result.prompts``)."""
    spec = data.spec
    prompts = list(dict.fromkeys([*spec.prompts, *spec.paraphrases, *spec.retain]))
    samples = generate_prompts(model, cfg, prompts)
    probs, feats = classifier.predict(samples)
    n = cfg.t2i.samples_per_prompt
    clip = spec.target[1] if spec.target[0] == "clip" else None
    if clip is not None:  # CLIP zero-shot: concept vs anchor; retain prompt vs the rest
        is_concept, assigned = clip.shows(samples), clip.assign(samples, spec.retain)
    per: dict[str, float] = {}
    hits: dict[str, torch.Tensor] = {}
    for i, p in enumerate(prompts):
        sl = slice(i * n, (i + 1) * n)
        erased = p in spec.prompts or p in spec.paraphrases
        if clip is not None:
            hit = is_concept[sl] if erased else assigned[sl] == spec.retain.index(p)
        else:
            target = spec.target if erased else concept_of(p)
            hit = shows(target, samples[sl], None, data.thresholds, probs[sl])
        hits[p] = hit
        per[p] = float(hit.float().mean())

    def rate(group: tuple[str, ...]) -> float | None:
        if not group:
            return None
        return float(torch.cat([hits[p] for p in group]).float().mean())

    retain_idx = [i for i, p in enumerate(prompts) if p in spec.retain]
    retain_feats = torch.cat([feats[i * n : (i + 1) * n] for i in retain_idx])
    _, ref_feats = classifier.predict(data.reference.images)
    proxies = proxy_losses(model, data.proxy_retain, data.proxy_forget)
    result = T2IEvalResult(
        num_samples=int(samples.shape[0]),
        concept=spec.concept,
        concept_rate=rate(spec.prompts) or 0.0,
        paraphrase_concept_rate=rate(spec.paraphrases),
        retain_accuracy=rate(spec.retain) or 0.0,
        fid=frechet_distance(retain_feats, ref_feats),
        proxy_retain=proxies[0],
        proxy_forget=proxies[1],
        per_prompt=per,
        prompts=tuple(prompts),
        thickness={
            p: float(v.mean()) for p, v in zip(prompts, thickness(samples).split(n), strict=True)
        },
        slant={p: float(v.mean()) for p, v in zip(prompts, slant(samples).split(n), strict=True)},
    )
    return result, samples


def save_prompt_grids(result: T2IEvalResult, samples: torch.Tensor, out, per_prompt: int):
    """One PNG per prompt (``<index>_<prompt words>.png``) and ``prompts.png`` with a row
    of the first ten images of every prompt; returns the overview's path."""
    from pathlib import Path

    from unlearn.metrics.grid import save_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, p in enumerate(result.prompts):
        imgs = samples[i * per_prompt : (i + 1) * per_prompt]
        name = f"{i:02d}_" + "_".join(p.split())[:60] + ".png"
        save_grid(imgs, out / name, nrow=10)
        rows.append(imgs[:10])
    return save_grid(torch.cat(rows), out / "prompts.png", nrow=10)
