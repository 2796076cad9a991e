"""The schema of an experiment config: one frozen dataclass per section.

Every field carries its documentation and allowed range or choices in ``metadata`` (``_f``);
:mod:`unlearn.config.loader` reads them when it validates YAML and ``--set`` values, and
:mod:`unlearn.config.checks` holds the checks that span several fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.config.checks import (
    check_clip_family,
    check_clip_model,
    check_data_source,
    check_held_out,
    check_instance_list,
    check_instance_specs,
    check_residual,
    check_search_steps,
    check_trial_resources,
)
from unlearn.config.errors import ConfigError


def _f(default: Any = dataclasses.MISSING, *, doc: str = "", lo=None, hi=None, choices=None, **kw):
    """A dataclass field with its documentation and validation bounds."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if default is dataclasses.MISSING and "default_factory" in kw:
        return field(default_factory=kw.pop("default_factory"), metadata=meta)
    return field(default=default, metadata=meta)


DATASETS = ("mnist", "digits", "torchvision-mnist", "fashion-mnist", "cifar10", "folder")
#: the model families and the kinds each serves (unlearn.families registers one family per
#: entry; a test checks that the two agree)
MODEL_FAMILIES = {
    "image": ("ddpm", "cond_ddpm", "vpsde", "vae"),
    "t2i": ("t2i",),
    "sdxl": ("sdxl",),
    "i2i": ("inpaint_ddpm", "mae"),
}
#: model kinds whose models are prompt-conditioned pipelines (forget specs are prompts)
PROMPT_KINDS = ("t2i", "sdxl")
MODEL_KINDS = tuple(k for kinds in MODEL_FAMILIES.values() for k in kinds)
T2I_TRAIN = ("unet", "cross_attn", "lora", "esd-u", "esd-x")
#: where the training images come from: the labelled dataset, or (t2i) sampled from the frozen
#: base pipeline with the forget and retain prompts
DATA_SOURCES = ("dataset", "generate")
#: the data sources each model family can use
FAMILY_DATA_SOURCES = {
    "image": ("dataset",),
    "t2i": DATA_SOURCES,
    "sdxl": DATA_SOURCES,
    "i2i": ("dataset",),
}
#: what an image-to-image model completes: the centre (inpaint) or the border (outpaint)
I2I_TASKS = ("inpaint", "outpaint")
#: ``data`` fields that choose the images a run unlearns on, not the images a base model was
#: pretrained on (left out of the pretrained models' cache keys)
DATA_RUN_ONLY = ("source", "generate")


@dataclass(frozen=True)
class GenerateConfig:
    """``data.source: generate``: the forget and retain sets sampled from the frozen base
    pipeline (``per_prompt`` images for each forget and retain prompt), cached on disk."""

    per_prompt: int = _f(8, doc="images sampled per forget / retain prompt", lo=1, hi=100000)
    steps: int = _f(25, doc="DDIM steps of each sample", lo=1, hi=1000)
    guidance: float = _f(7.5, doc="classifier-free guidance scale of the samples", lo=0.0, hi=100.0)
    seed: int = _f(0, doc="seed of the samples' initial noise", lo=0)
    chunk: int = _f(16, doc="images per cache file (a killed generation resumes)", lo=1, hi=4096)
    filter: str = _f(
        "none",
        doc="keep only the images that show what their prompt asks: 'measure' as the run's "
        "concept measure (eval.concept_measure) says, 'clip' as CLIP (eval.clip_model) says; "
        "none: keep every image",
        choices=("none", "measure", "clip"),
    )
    cache: str = _f(
        "",
        doc="directory of the generated set; empty: <workdir>/generated/<key of the pipeline's "
        "weights, the prompts, the sampler settings and the seed>",
    )


@dataclass(frozen=True)
class DataConfig:
    """Which images, at which size, and how they split into train / held-out."""

    name: str = _f("mnist", doc="dataset", choices=DATASETS)
    resolution: int = _f(16, doc="square image side in pixels", lo=8, hi=1024)
    root: str = _f("", doc="folder for online datasets or the image folder")
    heldout_fraction: float = _f(0.1, doc="fraction held out for evaluation", lo=0.01, hi=0.5)
    split_seed: int = _f(0, doc="seed of the train / held-out split", lo=0)
    source: str = _f(
        "dataset",
        doc="training images: the dataset, or (t2i) 'generate': sampled from the frozen "
        "base pipeline with the forget and retain prompts (data.generate)",
        choices=DATA_SOURCES,
    )
    generate: GenerateConfig = _f(
        default_factory=GenerateConfig, doc="data.source=generate: how the set is sampled"
    )


@dataclass(frozen=True)
class OutlierConfig:
    """A synthetic out-of-distribution image injected ``copies`` times (memorisation)."""

    copies: int = _f(0, doc="times the outlier is added to training data; 0 = none", lo=0, hi=10000)
    seed: int = _f(0, doc="seed of the outlier pattern", lo=0)
    radius: float = _f(0.35, doc="RMS pixel distance counted as a reproduction", lo=0.0, hi=2.0)


@dataclass(frozen=True)
class ForgetConfig:
    """What to forget: classes, explicit training indices, or the injected outlier."""

    classes: tuple[int, ...] = _f(default_factory=tuple, doc="class ids to forget")
    indices: tuple[int, ...] = _f(default_factory=tuple, doc="training-set indices to forget")
    outlier: OutlierConfig = _f(default_factory=OutlierConfig, doc="memorised outlier")
    concept: str = _f("", doc="t2i: the word or phrase to erase (a digit word or an attribute)")
    prompts: tuple[str, ...] = _f(default_factory=tuple, doc="t2i: prompts used while unlearning")
    anchor: str = _f("", doc="t2i: the anchor / replacement concept, e.g. 'a handwritten digit'")
    paraphrases: tuple[str, ...] = _f(
        default_factory=tuple, doc="t2i: held-out prompts of the concept, used only in evaluation"
    )
    retain_prompts: tuple[str, ...] = _f(
        default_factory=tuple, doc="t2i: prompts whose images must stay as they are"
    )
    caption: str = _f(
        "", doc="t2i: a memorised caption to forget with its image(s) (SISS on prompt-image pairs)"
    )
    caption_images: tuple[int, ...] = _f(
        default_factory=tuple,
        doc="t2i: training-split indices of the image(s) the caption reproduces; their "
        "copies within forget.outlier.radius are forgotten too",
    )
    retain_source: str = _f(
        "retain",
        doc="i2i: the retain set unlearning keeps: 'retain' (the training images of the "
        "other classes), 'digits' (scikit-learn's 8x8 digits resized to the model's size, a "
        "proxy) or a folder of images of the model's size (a proxy)",
    )


@dataclass(frozen=True)
class ModelConfig:
    """The generative model family and its (small) diffusers UNet / VAE."""

    kind: str = _f("ddpm", doc="model family", choices=MODEL_KINDS)
    block_out_channels: tuple[int, ...] = _f((32, 64, 64), doc="UNet / VAE channel widths")
    layers_per_block: int = _f(1, doc="resnet layers per UNet block", lo=1, hi=4)
    attention: bool = _f(True, doc="self-attention at the lowest resolution")
    norm_num_groups: int = _f(8, doc="group-norm groups", lo=1, hi=64)
    num_train_timesteps: int = _f(1000, doc="DDPM diffusion steps", lo=10, hi=4000)
    beta_schedule: str = _f(
        "squaredcos_cap_v2", choices=("linear", "squaredcos_cap_v2", "scaled_linear")
    )
    latent_channels: int = _f(4, doc="VAE latent channels", lo=1, hi=64)
    pretrained: str = _f(
        "",
        doc="directory or hub id to start from: a diffusers UNet2DModel, or for t2i a "
        "StableDiffusionPipeline",
    )
    train: str = _f(
        "unet",
        doc="t2i: what unlearning trains: all UNet weights, its cross-attention only, LoRA, "
        "or ESD's sets: esd-u (linear / conv layers outside cross-attention), esd-x (the "
        "cross-attention's linear layers)",
        choices=T2I_TRAIN,
    )
    lora_rank: int = _f(4, doc="t2i: rank of the LoRA adapters (model.train=lora)", lo=1, hi=256)
    lora_merge: bool = _f(False, doc="t2i: merge the LoRA adapters into the saved UNet")


@dataclass(frozen=True)
class PretrainConfig:
    """Training of the base model and of the evaluation classifier."""

    steps: int = _f(6000, doc="optimiser steps for the base model", lo=1)
    batch_size: int = _f(64, lo=1, hi=4096)
    lr: float = _f(2e-3, lo=1e-7, hi=1.0)
    ema_decay: float = _f(0.999, doc="EMA of weights; 0 disables", lo=0.0, hi=0.99999)
    checkpoint_every: int = _f(500, doc="steps between resumable checkpoints", lo=1)
    classifier_steps: int = _f(3000, lo=1)
    classifier_lr: float = _f(2e-3, lo=1e-7, hi=1.0)
    classifier_label_smoothing: float = _f(
        0.01,
        doc="label smoothing of the classifier; its confidence saturates near 1 - smoothing",
        lo=0.0,
        hi=0.5,
    )
    seed: int = _f(0, lo=0)


@dataclass(frozen=True)
class MemoriseConfig:
    """One training image duplicated ``copies`` times, always captioned ``caption``, so the
    text-to-image pipeline reproduces that image for that caption (a memorised prompt)."""

    caption: str = _f("", doc="the memorised caption (its words join the tokenizer); empty = none")
    index: int = _f(0, doc="training-set index of the duplicated image", lo=0)
    copies: int = _f(
        0, doc="extra copies of the image in the training data; 0 = none", lo=0, hi=100000
    )
    radius: float = _f(
        0.2, doc="RMS pixel distance to the image counted as a reproduction", lo=0.0, hi=2.0
    )


@dataclass(frozen=True)
class T2IConfig:
    """The text-to-image pipeline built from scratch (the demo): text encoder, VAE, training
    of both and of the UNet, and classifier-free-guided sampling."""

    text_dim: int = _f(64, doc="text encoder width (= the UNet's cross-attention width)", lo=8)
    text_layers: int = _f(2, doc="text encoder transformer layers", lo=1, hi=48)
    text_heads: int = _f(2, doc="text encoder attention heads", lo=1, hi=64)
    max_length: int = _f(16, doc="tokens per prompt, padded", lo=4, hi=512)
    vae_channels: tuple[int, ...] = _f((32, 64, 64), doc="VAE block widths (downsampling 2^(n-1))")
    vae_steps: int = _f(3000, doc="VAE optimiser steps", lo=1)
    vae_lr: float = _f(1e-3, lo=1e-7, hi=1.0)
    kl_weight: float = _f(1e-5, doc="VAE KL weight per latent dimension", lo=0.0, hi=1.0)
    attention_head_dim: int = _f(8, doc="UNet attention head width", lo=1, hi=512)
    cond_drop: float = _f(
        0.1, doc="fraction of empty captions (classifier-free guidance)", lo=0.0, hi=1.0
    )
    guidance: float = _f(5.0, doc="classifier-free guidance scale when sampling", lo=0.0, hi=50.0)
    samples_per_prompt: int = _f(50, doc="images generated per evaluation prompt", lo=1, hi=100000)
    memorise: MemoriseConfig = _f(default_factory=MemoriseConfig, doc="a memorised caption")


@dataclass(frozen=True)
class I2IConfig:
    """Image-to-image completion (model kinds ``inpaint_ddpm`` and ``mae``): which region is
    hidden and filled, the masked autoencoder's size, and the completions an evaluation
    scores."""

    task: str = _f(
        "inpaint",
        doc="inpaint: fill the centre square; outpaint: fill the border",
        choices=I2I_TASKS,
    )
    mask_ratio: float = _f(
        0.25, doc="fraction of the image hidden, in (0, 1) (rounded to whole patches)"
    )
    train_tasks: tuple[str, ...] = _f(
        I2I_TASKS, doc="the tasks pretraining covers (the base model supports these only)"
    )
    patch_size: int = _f(2, doc="mask grid (and the masked autoencoder's patch) in pixels", lo=1)
    width: int = _f(64, doc="mae: encoder width", lo=8, hi=1024)
    layers: int = _f(4, doc="mae: encoder layers", lo=1, hi=48)
    heads: int = _f(4, doc="mae: attention heads", lo=1, hi=64)
    decoder_width: int = _f(64, doc="mae: decoder width", lo=8, hi=1024)
    decoder_layers: int = _f(2, doc="mae: decoder layers", lo=1, hi=48)
    eval_images: int = _f(
        200,
        doc="held-out images completed per evaluation, of the forget and of the retain classes",
        lo=2,
        hi=100000,
    )

    def __post_init__(self) -> None:
        r = self.mask_ratio
        if not (isinstance(r, (int, float)) and 0.0 < r < 1.0):
            raise ConfigError(
                f"i2i.mask_ratio: {r!r} is not allowed; expected a fraction in (0, 1)"
            )
        bad = [t for t in self.train_tasks if t not in I2I_TASKS]
        if bad or not self.train_tasks:
            raise ConfigError(
                f"i2i.train_tasks: {list(self.train_tasks)!r} is not allowed; expected a "
                f"non-empty list of {', '.join(I2I_TASKS)}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Sample-based evaluation; all seeds fixed so two evaluations agree exactly."""

    num_samples: int = _f(1000, doc="generated samples per evaluation", lo=10, hi=100000)
    sampler_steps: int = _f(50, doc="DDIM steps", lo=2, hi=1000)
    batch_size: int = _f(250, lo=1, hi=10000)
    seed: int = _f(1234, lo=0)
    proxy_batch: int = _f(128, doc="held-out images in the fixed-noise proxy batches", lo=1)
    elbo_timesteps: int = _f(50, doc="timesteps sampled for the negative ELBO", lo=1, hi=4000)
    confidence: float = _f(0.9, doc="classifier confidence for a 'clean' sample", lo=0.0, hi=1.0)
    concept_measure: str = _f(
        "classifier",
        doc="t2i: what decides that an image shows the concept: the data's evaluation "
        "classifier and measured attributes (digits, thick / thin / left / right), or CLIP "
        "zero-shot (concept prompt above the anchor; styles, objects)",
        choices=("classifier", "clip"),
    )
    clip_model: str = _f(
        "", doc="t2i, concept_measure=clip: hub id or directory of a transformers CLIPModel"
    )

    def __post_init__(self) -> None:
        check_clip_model(self.concept_measure, self.clip_model)


@dataclass(frozen=True)
class MethodConfig:
    """The unlearning loss."""

    name: str = _f("siss", doc="unlearning method")
    lam: float = _f(0.5, doc="static lambda (mixture weight / trade-off)", lo=0.0, hi=1.0)
    scale: float = _f(0.0, doc="SISS forget scale s in (1+s)", lo=0.0, hi=1000.0)
    form: str = _f("loss", doc="SISS combination", choices=("loss", "gradient"))
    clip: float = _f(1.0, doc="gradient clipping norm (0 = off)", lo=0.0)
    options: dict = _f(
        default_factory=dict,
        doc="method-specific options, kept per method: {<method>: {option: value}}; the "
        "selected method's are used. Options given directly ({option: value}) are the "
        "selected method's too, over those under its name",
    )

    def options_of(self, name: str | None = None) -> dict:
        """The options of method ``name`` (default: the selected one) as one flat mapping:
        those under its name, and for the selected method the ones given directly over them."""
        return options_of(self.options, self.name, name or self.name)

    def select(self, name: str) -> MethodConfig:
        """This section with method ``name`` selected: options given directly belonged to the
        method selected so far and move under its name, so they never reach ``name``."""
        if name == self.name:
            return self
        return dataclasses.replace(self, name=name, options=pin_options(self.options, self.name))


def direct_options(options: dict) -> dict:
    """The options given directly (not under a method's name): a method's options never take a
    mapping, so a mapping in ``method.options`` is always the options of the method it names."""
    return {k: v for k, v in options.items() if not isinstance(v, dict)}


def options_of(options: dict, selected: str, name: str) -> dict:
    """Method ``name``'s options in a ``method.options`` mapping whose method is ``selected``."""
    own = options.get(name)
    out = dict(own) if isinstance(own, dict) else {}
    if name == selected:
        out.update(direct_options(options))
    return out


def pin_options(options: dict, owner: str) -> dict:
    """``options`` with those given directly moved under ``owner``, their method (over what
    ``owner``'s entry held): what selecting another method does to them."""
    direct = direct_options(options)
    if not direct:
        return dict(options)
    out = {k: v for k, v in options.items() if k not in direct}
    own = out.get(owner)
    out[owner] = {**(own if isinstance(own, dict) else {}), **direct}
    return out


@dataclass(frozen=True)
class AgentConfig:
    """How lambda is chosen at every step."""

    name: str = _f("static", doc="lambda agent")
    path: str = _f("", doc="policy directory (policy agent) or PBT result (schedule)")
    options: dict = _f(default_factory=dict, doc="agent-specific options")


@dataclass(frozen=True)
class UnlearnConfig:
    """The unlearning run: budget, optimiser, evaluation cadence."""

    steps: int = _f(200, doc="optimiser steps", lo=1)
    batch_size: int = _f(64, lo=1, hi=4096)
    lr: float = _f(1e-4, lo=1e-8, hi=1.0)
    grad_accum: int = _f(1, lo=1, hi=1024)
    eval_every: int = _f(0, doc="steps between proxy evaluations (0 = only at the end)", lo=0)
    seed: int = _f(0, lo=0)


@dataclass(frozen=True)
class GuardConfig:
    """The quality guard: a run whose quality collapses is flagged ``collapsed`` (and, with
    ``stop``, stopped with the last weights still inside the bound)."""

    retain_multiple: float = _f(
        0.0,
        doc="collapse when the retain proxy (the fixed-noise denoising loss on held-out retain "
        "data, measured every unlearn.eval_every steps and at the end) rises past this "
        "multiple of its value before the first step; 0 = off, else above 1",
        lo=0.0,
        hi=1e6,
    )
    fid_multiple: float = _f(
        0.0,
        doc="collapse when the final FID exceeds this multiple of the base model's (runs that "
        "evaluate the base model: run, bench); 0 = off, else above 1",
        lo=0.0,
        hi=1e6,
    )
    stop: bool = _f(
        False,
        doc="on a retain-proxy collapse, stop the run and return the weights of the last "
        "measurement inside the bound (the starting weights when none was) instead of the "
        "last ones; needs retain_multiple and unlearn.eval_every",
    )

    def __post_init__(self) -> None:
        for name in ("retain_multiple", "fid_multiple"):
            v = getattr(self, name)
            if 0.0 < v <= 1.0:
                raise ConfigError(
                    f"guard.{name}: {v!r} is not allowed; expected 0 (off) or a multiple above "
                    "1 (the guard flags a rise past it)"
                )
        if self.stop and not self.retain_multiple:
            raise ConfigError(
                "guard.stop: True is not allowed with guard.retain_multiple=0; expected a "
                "retain_multiple above 1 (the stop acts on the retain proxy)"
            )

    @property
    def on(self) -> bool:
        return bool(self.retain_multiple or self.fid_multiple)


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: embedded SQLite store by default, ``MLFLOW_TRACKING_URI`` wins."""

    uri: str = _f("", doc="tracking URI; empty = sqlite:///<workdir>/mlflow.db")
    experiment: str = _f("unlearn", doc="MLflow experiment name")
    enabled: bool = _f(True)


@dataclass(frozen=True)
class EnvConfig:
    """The Gymnasium environment: T decisions of K optimiser steps each."""

    decisions: int = _f(10, doc="decisions per episode (T)", lo=1, hi=100000)
    steps_per_decision: int = _f(5, doc="optimiser steps per decision (K)", lo=1, hi=100000)
    proxy_every: int = _f(
        20,
        doc="optimiser steps between the observation's proxy measurements (one forward pass "
        "each; at the first decision that far after the last one, and at the episode's end); "
        "1 = every decision",
        lo=1,
        hi=1000000,
    )
    proxy_batch: int = _f(
        16,
        doc="held-out images per side in the observation's proxies (the first of the "
        "eval.proxy_batch fixed-noise batches; at most that many)",
        lo=1,
    )
    beta: float = _f(1.0, doc="weight of quality loss in the reward", lo=0.0, hi=1000.0)
    reward: str = _f("tradeoff", doc="reward definition", choices=("tradeoff", "forget", "final"))
    final_eval: bool = _f(True, doc="sample-based metrics at the end of the episode")
    final_eval_samples: int = _f(200, doc="samples of the end-of-episode evaluation", lo=10)
    scale_action: bool = _f(False, doc="second action dimension: the forget scale")
    stop_action: bool = _f(
        False,
        doc="last action dimension: stop (> 0.8 ends the run before the decision's steps, "
        "once forgetting is done; the steps used are reported)",
    )
    forget_probe: int = _f(
        0,
        doc="samples generated at each proxy measurement for the observation's sample-based "
        "forget rate (the forget classes' mean classifier probability); 0 = off",
        lo=0,
        hi=4096,
    )
    step_cost: float = _f(
        0.0, doc="reward subtracted per optimiser step used (makes stopping pay)", lo=0.0, hi=1.0
    )
    divergence_penalty: float = _f(10.0, lo=0.0)
    residual: dict = _f(
        default_factory=dict,
        doc="residual λ action: {start, end, width}; λ = clip(start + (end - start) * "
        "progress + width * (2a - 1), 0, 1) for the policy's λ entry a, so an untrained "
        "policy (a = 0.5) runs the linear schedule start -> end; {} = λ is the entry itself",
    )
    attack_weight: float = _f(
        0.0,
        doc="weight of the attacked forget rate (relearning attack on audit.relearn_forget_samples "
        "forget samples for audit.attacked_steps steps) subtracted from the end-of-episode "
        "reward (needs env.final_eval); 0 = no attack",
        lo=0.0,
        hi=1000.0,
    )
    attack: str = _f(
        "relearn",
        doc="the attack behind env.attack_weight: relearn (the attacked forget rate) or, on a "
        "pipeline, adversarial (the post-attack concept rate of the adversarial-prompt attack)",
        choices=("relearn", "adversarial"),
    )
    train_instances: tuple[int | str, ...] = _f(
        (1, 3, 5, 7),
        doc="instances to forget during training: classes (t2i: digit concepts) or names "
        "of env.instances",
    )
    test_instances: tuple[int | str, ...] = _f(
        (2, 8),
        doc="held-out instances for evaluation (classes or names of env.instances); none "
        "trained on",
    )
    instances: dict[str, dict] = _f(
        default_factory=dict,
        doc="named instances: name -> forget-section fields of what it forgets (t2i: "
        "{concept: thick, prompts: [...], paraphrases: [...]}; images: {classes: [3, 5]}); "
        "fields it does not give keep the forget section's, except what to forget and the "
        "retain prompts, which start empty",
    )

    def __post_init__(self) -> None:
        check_residual(self.residual)
        for name in ("train_instances", "test_instances"):
            items = check_instance_list(f"env.{name}", getattr(self, name), self.instances)
            object.__setattr__(self, name, items)
        check_held_out(self.train_instances, self.test_instances)


@dataclass(frozen=True)
class RLConfig:
    """RLlib training of λ policies on the environment."""

    algo: str = _f("ppo", choices=("ppo", "sac"))
    iterations: int = _f(5, lo=1)
    env_runners: int = _f(1, lo=0, hi=1024)
    gpus_per_env_runner: float = _f(0.0, lo=0.0, hi=8.0)
    sample_timeout_s: float = _f(600.0, doc="RLlib sample timeout; slow envs need a lot", lo=1.0)
    train_batch_size: int = _f(40, lo=1)
    minibatch_size: int = _f(20, lo=1)
    lr: float = _f(3e-4, lo=1e-8, hi=1.0)
    gamma: float = _f(0.99, lo=0.0, hi=1.0)
    seed: int = _f(0, lo=0)
    num_epochs: int = _f(4, doc="PPO epochs over each train batch", lo=1, hi=1000)
    hidden: tuple[int, ...] = _f((64, 64), doc="hidden layer widths of the policy / value MLPs")


@dataclass(frozen=True)
class TuneConfig:
    """Ray Tune searches: resources per trial and the objective."""

    cpus_per_trial: float = _f(1.0, lo=0.0, hi=1024.0)
    gpus_per_trial: float = _f(0.0, lo=0.0, hi=64.0)
    num_samples: int = _f(4, lo=1)
    max_concurrent: int = _f(2, lo=1)
    fid_weight: float = _f(0.01, doc="weight of FID in the single-objective score", lo=0.0)
    seed: int = _f(0, lo=0)
    report_every: int = _f(0, doc="steps between reports and checkpoints (0 = steps / 10)", lo=0)
    proxy_forget_weight: float = _f(0.5, doc="forget-proxy weight in tune/proxy_score", lo=0.0)
    objective: str = _f(
        "forget_rate",
        doc="the forget term of the objective: the rate after unlearning, the attacked "
        "forget rate (after a relearning attack on audit.relearn_forget_samples forget samples "
        "for audit.attacked_steps steps: robust forgetting), or on a pipeline the post-attack "
        "concept rate of the adversarial-prompt attack (audit.adversarial_*)",
        choices=("forget_rate", "attacked_forget_rate", "adversarial_concept_rate"),
    )
    grace_period: int = _f(2, doc="ASHA: reports before a trial may be stopped", lo=1)
    perturbation_interval: int = _f(2, doc="PBT / PB2: reports between perturbations", lo=1)
    max_failures: int = _f(
        0,
        doc="times Ray Tune retries a failed trial from its last checkpoint (Tune's "
        "FailureConfig): 0 = never, -1 = without limit",
        lo=-1,
        hi=100,
    )
    trial_resources: dict = _f(
        default_factory=dict,
        doc="custom Ray resources each trial needs besides its CPUs and GPUs, e.g. {worker: 1} "
        "places trials on the nodes started with that resource (ray start --resources); a name "
        "no node of the cluster offers stops the sweep before it starts",
    )

    def __post_init__(self) -> None:
        check_trial_resources(self.trial_resources)


@dataclass(frozen=True)
class BenchConfig:
    """Baselines of ``unlearn bench`` (``--tune-baselines N`` searches them instead)."""

    decay: dict = _f(
        default_factory=dict,
        doc="the decay baseline: {start, end} (λ linear from start to end, both in [0, 1]) and "
        "optionally scale (its cells' method.scale)",
    )
    check_every: int = _f(
        -1,
        doc="steps between the sample-based forget checks behind 'steps to forget' (each "
        "generates eval.num_samples images); -1 = unlearn.eval_every, 0 = only the final "
        "evaluation",
        lo=-1,
    )
    search_steps: dict = _f(
        default_factory=dict,
        doc="the step budgets --tune-baselines and --oracle also search: {min: N, max: M} "
        "(unlearn.steps drawn log-uniformly; the winner's steps are its rows' budget); {} = "
        "every trial runs unlearn.steps",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "search_steps", check_search_steps(self.search_steps))


@dataclass(frozen=True)
class AuditConfig:
    """``unlearn audit``: the budgets of the relearning attack and of membership inference."""

    relearn_steps: int = _f(40, doc="fine-tuning steps of each relearning attack", lo=1, hi=100000)
    relearn_every: int = _f(
        20, doc="steps between the attack's forget-rate checkpoints", lo=1, hi=100000
    )
    relearn_forget_samples: int = _f(
        8, doc="forget samples k in the forget attack set", lo=1, hi=100000
    )
    relearn_retain_samples: int = _f(
        256, doc="retain samples in the benign (retain-only) attack set", lo=1, hi=1000000
    )
    relearn_batch_size: int = _f(16, doc="batch size of the attack's fine-tuning", lo=1, hi=4096)
    relearn_lr: float = _f(1e-4, doc="AdamW learning rate of the attack", lo=1e-8, hi=1.0)
    return_fraction: float = _f(
        0.5,
        doc="the forget rate has returned once it reaches this fraction of the base model's",
        lo=0.0,
        hi=1.0,
    )
    num_samples: int = _f(64, doc="generated samples per forget-rate checkpoint", lo=10, hi=100000)
    mia_samples: int = _f(
        64, doc="samples per side of each membership-inference AUC", lo=2, hi=100000
    )
    mia_noise: int = _f(
        8, doc="fixed (t, noise) draws averaged into each sample's attack loss", lo=1, hi=1000
    )
    seed: int = _f(0, doc="seed of attack sets, fine-tuning batches and fixed noise", lo=0)
    attacks: tuple[str, ...] = _f(
        default_factory=tuple,
        doc="attacks to run: relearn, mia, and for t2i paraphrase, inversion and adversarial; "
        "empty = every one that applies to the model (paraphrase only with forget.paraphrases)",
        choices=("relearn", "mia", "paraphrase", "inversion", "adversarial"),
    )
    prompt_samples: int = _f(
        20, doc="t2i: images per prompt of each concept-rate measurement", lo=1, hi=100000
    )
    inversion_steps: int = _f(
        300,
        doc="t2i concept inversion: optimiser steps learning the one new token embedding",
        lo=1,
        hi=100000,
    )
    inversion_lr: float = _f(
        5e-3, doc="t2i concept inversion: AdamW learning rate of the token", lo=1e-8, hi=10.0
    )
    adversarial_tokens: int = _f(
        2,
        doc="t2i adversarial-prompt attack: words appended to each forget prompt",
        lo=1,
        hi=64,
    )
    adversarial_rounds: int = _f(
        1,
        doc="t2i adversarial-prompt attack: rounds of the greedy coordinate search (each "
        "revisits every appended word once)",
        lo=1,
        hi=100,
    )
    adversarial_candidates: int = _f(
        0,
        doc="t2i adversarial-prompt attack: words scored per position and round, a seeded "
        "subset of the vocabulary; 0 = the whole vocabulary (exact coordinate search)",
        lo=0,
        hi=1000000,
    )
    adversarial_images: int = _f(
        8,
        doc="t2i adversarial-prompt attack: concept images (forget latents) the loss is "
        "measured on",
        lo=1,
        hi=100000,
    )
    adversarial_noise: int = _f(
        2, doc="t2i adversarial-prompt attack: fixed (t, noise) draws per image", lo=1, hi=1000
    )
    attacked_steps: int = _f(
        20,
        doc="relearning steps behind the attacked forget rate of bench --audit, "
        "tune.objective=attacked_forget_rate and env.attack_weight (small: it runs per run)",
        lo=1,
        hi=100000,
    )


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    name: str = _f("experiment", doc="experiment name")
    workdir: str = _f("runs", doc="where models, caches and reports go (made absolute)")
    device: str = _f("auto", doc="auto | cpu | cuda | cuda:N", choices=None)
    data: DataConfig = _f(default_factory=DataConfig)
    forget: ForgetConfig = _f(default_factory=ForgetConfig)
    model: ModelConfig = _f(default_factory=ModelConfig)
    pretrain: PretrainConfig = _f(default_factory=PretrainConfig)
    t2i: T2IConfig = _f(default_factory=T2IConfig)
    i2i: I2IConfig = _f(default_factory=I2IConfig)
    eval: EvalConfig = _f(default_factory=EvalConfig)
    method: MethodConfig = _f(default_factory=MethodConfig)
    agent: AgentConfig = _f(default_factory=AgentConfig)
    unlearn: UnlearnConfig = _f(default_factory=UnlearnConfig)
    guard: GuardConfig = _f(default_factory=GuardConfig)
    tracking: TrackingConfig = _f(default_factory=TrackingConfig)
    env: EnvConfig = _f(default_factory=EnvConfig)
    rl: RLConfig = _f(default_factory=RLConfig)
    tune: TuneConfig = _f(default_factory=TuneConfig)
    bench: BenchConfig = _f(default_factory=BenchConfig)
    audit: AuditConfig = _f(default_factory=AuditConfig)

    def __post_init__(self) -> None:
        check_clip_family(self.eval.concept_measure, self.model.kind, PROMPT_KINDS)
        family = next(f for f, kinds in MODEL_FAMILIES.items() if self.model.kind in kinds)
        if self.data.source not in FAMILY_DATA_SOURCES[family]:
            raise ConfigError(
                f"data.source: {self.data.source!r} is not allowed with model.kind="
                f"{self.model.kind}; expected one of {', '.join(FAMILY_DATA_SOURCES[family])} "
                "(sets are generated from the prompts of a text-to-image pipeline)"
            )
        check_data_source(self.data, self.forget, self.eval)
        check_instance_specs(self.env.instances, [f.name for f in dataclasses.fields(self.forget)])
        if self.guard.stop and not self.unlearn.eval_every:
            raise ConfigError(
                "guard.stop: True is not allowed with unlearn.eval_every=0; expected "
                "unlearn.eval_every >= 1 (the guard stops at a measurement of the retain proxy)"
            )

    def to_dict(self) -> dict:
        return _to_plain(self)

    def digest(self, *sections: str) -> str:
        """Short hash of the given sections (all when none): the cache key of derived work."""
        d = self.to_dict()
        if sections:
            d = {s: d[s] for s in sections}
        return digest_of(d)

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir).expanduser().resolve()


def digest_of(obj: Any) -> str:
    """Short, order-independent hash of a JSON-able value (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj
