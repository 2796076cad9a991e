"""The forget task of model kind ``t2i``: config → pipeline, prompt split, evaluation data,
classifier (what the task builder does for the image families, for text-to-image).

Everything is checked before any work starts: the pipeline's components, the method's
support for ``t2i``, peft for ``model.train=lora``, the prompts' words against the
tokenizer, the data's image size against the pipeline's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError
from unlearn.data import load_splits
from unlearn.data.captions import AttributeThresholds
from unlearn.data.prompts import PromptData, prompt_spec, prompt_split
from unlearn.metrics.t2i import T2IEvalData, prepare_t2i
from unlearn.models.t2i import T2IModel, load_t2i


@dataclass
class T2ITask:
    """A loaded t2i forget task: the model (prompt table filled, trainable parts set), the
    forget / retain latents, the fixed evaluation data and the evaluation classifier."""

    model: T2IModel
    data: PromptData
    eval_data: T2IEvalData
    classifier: torch.nn.Module | None
    model_dir: Path | None


@dataclass(frozen=True)
class Pipelines:
    """What the task's functions need of a family built on the t2i model (the t2i and SDXL
    families pass themselves; these are the t2i family's): its kinds, what its saved
    models are, how to load one and the cache key of its demo pipeline."""

    kinds: tuple[str, ...]
    description: str
    pipeline_class: str
    load: Callable[[Path], T2IModel]
    model_key: Callable[[Config], str]


def _t2i_key(cfg: Config) -> str:
    from unlearn.families.t2i.pretrain import t2i_model_key

    return t2i_model_key(cfg)


#: the t2i family's pipelines (the default of every function here)
T2I_PIPELINES = Pipelines(
    ("t2i",), "a text-to-image pipeline", "StableDiffusionPipeline", load_t2i, _t2i_key
)


def _family(family: Pipelines | None) -> Pipelines:
    return T2I_PIPELINES if family is None else family


def pipeline_dir(cfg: Config, family=None) -> Path:
    """``model.pretrained``, else the cached or shipped pipeline of this config."""
    if cfg.model.pretrained:
        return Path(cfg.model.pretrained).expanduser()
    from unlearn.families.store import locate

    family = _family(family)
    m, _ = locate(cfg, family.model_key(cfg))
    if m is None:
        raise ConfigError(
            f"model: no pretrained {family.description[2:]} for this config; set "
            f"model.pretrained=<{family.pipeline_class} dir> or run "
            "`unlearn pretrain --config <your config>` first"
        )
    return m


def check_train_mode(cfg: Config) -> None:
    if cfg.model.train == "lora":
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ConfigError(
                "model.train: 'lora' needs peft, which is not installed (pip install peft); "
                "or use model.train=unet or cross_attn"
            ) from None


def load_t2i_task(
    cfg: Config,
    model: T2IModel | None = None,
    method=None,
    classifier: torch.nn.Module | None = None,
    need_classifier: bool = True,
    configure: bool = True,
    family=None,
) -> T2ITask:
    """Build the t2i forget task of ``cfg`` (``model``: use this pipeline instead of loading
    one; ``method``: checked against the family first; ``configure=False``: leave what trains
    as it is, for a model already set up: :func:`retarget_t2i`)."""
    family = _family(family)
    kind = family.kinds[0]
    if cfg.model.kind not in family.kinds:
        raise ConfigError(f"model.kind: {cfg.model.kind!r} is not {kind!r}")
    if method is not None and kind not in method.families:
        raise ConfigError(
            f"method.name: {method.name!r} does not support model kind {kind!r}; "
            f"expected one of {', '.join(_t2i_methods(kind))}"
        )
    check_train_mode(cfg)
    if method is not None and not method.uses_retain:
        f = cfg.forget
        if not f.caption.strip() and not [q for q in f.prompts if q.strip()]:
            raise ConfigError(
                f"forget.prompts: {list(f.prompts)} is not allowed for method {method.name!r}; "
                "expected at least one prompt of the concept (it sees only the forget prompts)"
            )
    model_dir = None
    if model is None:
        model_dir = pipeline_dir(cfg, family)
        model = family.load(model_dir)
    spec = prompt_spec(cfg.forget, model.tokenizer, cfg.eval.concept_measure)
    generated = cfg.data.source == "generate"
    if generated:  # sampled at data.resolution, a whole number of latent pixels
        r, f = cfg.data.resolution, model.vae_scale_factor
        if r % f:
            raise ConfigError(
                f"data.resolution: {r} is not a multiple of the VAE's scale factor {f}; "
                f"expected a multiple of {f} (the pipeline's own: {model.image_resolution})"
            )
        model.sample_size = r // f
    else:
        splits = load_splits(cfg.data)
        tr = splits.train
        if (tr.channels, tr.resolution) != (model.image_channels, model.image_resolution):
            r = model.image_resolution
            raise ConfigError(
                f"data.resolution: the pipeline makes {model.image_channels}x{r}x{r} images but "
                f"the data is {tr.channels}x{tr.resolution}x{tr.resolution}; set "
                f"data.resolution={r}"
            )
    if cfg.eval.concept_measure == "clip":
        from unlearn.metrics.clip import ClipMeasure, resolve_clip_target

        # CLIP decides the concept everywhere (data split, reference images, metrics)
        if not isinstance(classifier, ClipMeasure):
            classifier = ClipMeasure.load(cfg.eval.clip_model)
        spec = resolve_clip_target(spec, classifier)
    elif classifier is None and (need_classifier or cfg.data.generate.filter == "measure"):
        classifier = _classifier(cfg, family)
    ids = model.set_prompts(spec.all_prompts)
    prompt_ids = dict(zip(spec.all_prompts, ids, strict=True))
    model.anchor_id = prompt_ids.get(spec.anchor, 0)
    if generated:  # data-free: the sets sampled from the frozen pipeline itself
        from unlearn.families.t2i.generate import generated_split

        data, reference = generated_split(model, cfg, spec, prompt_ids, classifier)
        thresholds = data.thresholds
    else:
        thresholds = AttributeThresholds.fit(tr.images)
        latents = model.encode_images(tr.images).cpu()
        data = prompt_split(spec, tr, latents, prompt_ids, thresholds)
        reference = splits.heldout
    eval_data = prepare_t2i(
        model, cfg, data.spec, thresholds, reference, data.split.retain, data.split.forget
    )
    if configure and (model.train_mode != cfg.model.train or cfg.model.train == "lora"):
        model.configure_training(cfg.model.train, cfg.model.lora_rank, cfg.model.lora_merge)
    return T2ITask(model, data, eval_data, classifier, model_dir)


def retarget_t2i(task: T2ITask, cfg: Config, family=None) -> T2ITask:
    """The task of another forget spec (an env / bench instance) on the same pipeline and
    classifier: the model's prompt table is refilled for ``cfg``'s prompts (ids of earlier
    tasks refer to their own tables: :class:`~unlearn.envs.instances.InstanceBank` keeps
    them), its trainable parts are left as they are."""
    return load_t2i_task(
        cfg, task.model, classifier=task.classifier, configure=False, family=family
    )


def _classifier(cfg: Config, family) -> torch.nn.Module:
    from unlearn.families.store import locate
    from unlearn.models import load_model

    _, c = locate(cfg, family.model_key(cfg))
    if c is None:
        raise ConfigError(
            "classifier: no evaluation classifier for this data config; run "
            "`unlearn pretrain --config <your config>` first"
        )
    return load_model(c)


def _t2i_methods(kind: str) -> list[str]:
    from unlearn.methods import METHODS

    return [n for n, m in METHODS.items() if kind in m.families]


def make_t2i_unlearner(cfg: Config, method, agent, model: T2IModel | None = None, family=None):
    """The t2i task and its :class:`~unlearn.unlearner.Unlearner` (the same loop as every
    family): returns (unlearner, pipeline directory or None, task)."""
    from unlearn.runtime import resolve_device
    from unlearn.unlearner import Unlearner

    task = load_t2i_task(cfg, model, method, family=family)
    dev = resolve_device(cfg.device)
    task.model.to(dev)
    task.classifier.to(dev)
    unl = Unlearner(
        task.model, method, agent, task.data.split, cfg, dev, task.eval_data, task.classifier
    )
    return unl, task.model_dir, task
