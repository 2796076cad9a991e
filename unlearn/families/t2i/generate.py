"""Data-free erasure (``data.source: generate``): the forget set sampled from the frozen base
pipeline with the forget prompts and the retain set with the retain prompts,
``data.generate.per_prompt`` images each, instead of a labelled dataset.

The set is cached on disk under a key of the pipeline's weights (a hash of every tensor of
its UNet, VAE and text encoder, the scheduler's config and the prompts' token ids), the
prompts, the sampler settings and the seed. It is written in chunks of
``data.generate.chunk`` images, each one safetensors file renamed into place with the hash
of its bytes in its name: a second run reuses the set, a killed generation resumes at the
first missing chunk, and a truncated or corrupted chunk (its bytes no longer match its name,
or its contents not the chunk they should be) is regenerated, never used. A directory
holding a set of another key (another pipeline, other prompts or sampler settings) is
refused, never reused. Each image's initial noise depends only on the seed and the image's
index, so a resumed set equals one generated in a single go.

``data.generate.filter`` keeps only the images that show what their prompt asks: forget
images that show the concept and retain images of their own retain prompt, as the run's
concept measure (``measure``) or CLIP (``clip``) decides. The filter is applied when the set
is loaded, so the cached set serves runs with and without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError
from unlearn.data.captions import AttributeThresholds
from unlearn.data.datasets import ImageData
from unlearn.data.forget import ForgetSplit
from unlearn.data.prompts import PromptData, PromptSpec, _target, shows

log = logging.getLogger(__name__)

#: the layout version of a cached set (part of its key)
FORMAT = 1
KEY_FILE = "key.json"


@dataclass(frozen=True)
class GeneratedSet:
    """Every generated image (in [-1, 1]), its scaled latent and the prompt it was sampled
    with (``prompts[prompt_index[i]]``); ``n_forget`` prompts come first."""

    images: torch.Tensor
    latents: torch.Tensor
    prompt_index: torch.Tensor
    prompts: tuple[str, ...]
    n_forget: int
    directory: Path


def generated_prompts(spec: PromptSpec) -> tuple[tuple[str, ...], int]:
    """The prompts sampled, forget prompts first (each once), and how many are forget ones."""
    forget = tuple(dict.fromkeys(p for p in spec.prompts if p.strip()))
    retain = tuple(p for p in dict.fromkeys(spec.retain) if p not in forget)
    return forget + retain, len(forget)


def weights_hash(model) -> str:
    """A hash of the pipeline's weights: every tensor (name, dtype, shape, bytes) of its
    UNet, VAE and text encoder, and its scheduler's config."""
    h = hashlib.sha256()
    for part in ("unet", "vae", "text_encoder"):
        for name, t in sorted(getattr(model, part).state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{part}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).reshape(-1).numpy().data if t.numel() else b"")
    h.update(json.dumps(dict(model.scheduler.config), sort_keys=True, default=str).encode())
    return h.hexdigest()


def set_key(model, cfg: Config, prompts: tuple[str, ...]) -> dict:
    """What a generated set depends on; its ``key`` entry is the hash of the rest."""
    g = cfg.data.generate
    ids = model.token_ids(list(prompts)).tolist()
    key = {
        "format": FORMAT,
        "weights": weights_hash(model),
        "prompts": list(prompts),
        "token_ids": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
        "sampler": {
            "per_prompt": g.per_prompt,
            "steps": g.steps,
            "guidance": g.guidance,
            "seed": g.seed,
            "chunk": g.chunk,
            "latent_shape": [model.channels, model.resolution, model.resolution],
        },
    }
    key["key"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return key


def cache_dir(cfg: Config, key: dict) -> Path:
    if cfg.data.generate.cache:
        return Path(cfg.data.generate.cache).expanduser().resolve()
    return cfg.workdir_path / "generated" / key["key"][:16]


def _check_owner(d: Path, key: dict, explicit: bool) -> None:
    """``d`` must be empty, absent, or hold the set of ``key``."""
    f = d / KEY_FILE
    if not d.exists():
        return
    if not d.is_dir():
        raise ConfigError(
            f"data.generate.cache: {str(d)!r} is not allowed; it is a file, expected a "
            "directory for the generated set"
        )
    if not f.is_file():
        if any(d.iterdir()):
            raise ConfigError(
                f"data.generate.cache: {str(d)!r} is not allowed; it holds files but no "
                f"generated set ({KEY_FILE} missing), expected an empty or new directory"
            )
        return
    try:
        have = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        have = {}
    if have.get("key") == key["key"]:
        return
    what = (
        "another pipeline"
        if have.get("weights") != key["weights"]
        else "other prompts"
        if (have.get("prompts"), have.get("token_ids")) != (key["prompts"], key["token_ids"])
        else "other sampler settings"
    )
    where = str(d) if explicit else f"{d} (the default for data.generate.cache)"
    raise ConfigError(
        f"data.generate.cache: {where!r} holds images generated for {what} "
        f"(key {str(have.get('key', '?'))[:16]}, this run's {key['key'][:16]}); it is never "
        "reused: expected an empty directory, the set of this pipeline and prompts, or "
        "another path"
    )


def _chunk_files(d: Path, j: int) -> list[Path]:
    return sorted(d.glob(f"chunk-{j:05d}-*.safetensors"))


def _load_chunk(d: Path, j: int, key: str, start: int, stop: int):
    """The chunk's (images, latents), or None when it is missing, truncated or corrupted
    (such a file is removed, with a warning)."""
    from safetensors import safe_open

    for f in _chunk_files(d, j):
        digest = f.name.removesuffix(".safetensors").rpartition("-")[2]
        try:
            ok = hashlib.sha256(f.read_bytes()).hexdigest()[:16] == digest
            if ok:
                with safe_open(str(f), framework="pt") as s:
                    meta = s.metadata() or {}
                    ok = meta.get("key") == key and meta.get("range") == f"{start}:{stop}"
                    images, latents = s.get_tensor("images"), s.get_tensor("latents")
                ok = ok and images.shape[0] == latents.shape[0] == stop - start
        except Exception:
            ok = False
        if ok:
            return images, latents
        log.warning("generated set: %s is truncated or corrupted; generating it again", f)
        f.unlink(missing_ok=True)
    return None


def _write_chunk(d: Path, j: int, key: str, start: int, stop: int, images, latents) -> None:
    """One chunk, written to a temporary file and renamed into place (with its hash)."""
    from safetensors.torch import save

    data = save(
        {"images": images.contiguous(), "latents": latents.contiguous()},
        metadata={"key": key, "range": f"{start}:{stop}"},
    )
    tmp = d / f".chunk-{j:05d}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, d / f"chunk-{j:05d}-{hashlib.sha256(data).hexdigest()[:16]}.safetensors")


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def generate_set(model, cfg: Config, spec: PromptSpec, device=None) -> GeneratedSet:
    """The generated set of ``spec``'s prompts from ``model`` (cached, resumed, verified)."""
    from unlearn.runtime import current_progress, resolve_device

    prompts, n_forget = generated_prompts(spec)
    key = set_key(model, cfg, prompts)
    d = cache_dir(cfg, key)
    _check_owner(d, key, bool(cfg.data.generate.cache))
    g = cfg.data.generate
    n = len(prompts) * g.per_prompt
    chunks = [(j, s, min(s + g.chunk, n)) for j, s in enumerate(range(0, n, g.chunk))]
    progress = current_progress()
    task = f"generate {n} images"
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    missing = []
    for j, s, e in chunks:
        got = _load_chunk(d, j, key["key"], s, e) if d.is_dir() else None
        if got is None:
            missing.append((j, s, e))
        else:
            done[j] = got
    if missing:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{KEY_FILE}.tmp"
        tmp.write_text(json.dumps(key, indent=2))
        os.replace(tmp, d / KEY_FILE)
        log.info("generating %d of %d images into %s", sum(e - s for _, s, e in missing), n, d)
        dev = torch.device(device) if device is not None else resolve_device(cfg.device)
        home = next(model.parameters()).device
        was = model.training
        model.to(dev).eval()
        emb = model.encode_cond(list(prompts))
        shape = (model.channels, model.resolution, model.resolution)
        try:
            for j, s, e in missing:
                progress(task, sum(c - b for i, b, c in chunks if i in done), n)
                idx = torch.arange(s, e)
                noise = torch.stack(
                    [
                        torch.randn(
                            shape, generator=torch.Generator().manual_seed(g.seed * 1_000_003 + i)
                        )
                        for i in idx.tolist()
                    ]
                )
                z = model.sample_latents(
                    emb[idx // g.per_prompt], g.steps, g.guidance, latents=noise
                )
                images = _to_uint8(model.decode(z)).cpu()
                latents = z.float().cpu()
                _write_chunk(d, j, key["key"], s, e, images, latents)
                done[j] = (images, latents)
        finally:
            model.to(home).train(was)
    progress(task, n, n)
    images = torch.cat([done[j][0] for j, _, _ in chunks]).float() / 127.5 - 1
    latents = torch.cat([done[j][1] for j, _, _ in chunks])
    index = torch.arange(n) // g.per_prompt
    return GeneratedSet(images, latents, index, prompts, n_forget, d)


def generated_split(
    model, cfg: Config, spec: PromptSpec, prompt_ids: dict[str, int], classifier=None
) -> tuple[PromptData, ImageData]:
    """The forget / retain split of the generated set (labels: prompt ids) and the reference
    images of evaluation (the retain prompts' generated images)."""
    gen = generate_set(model, cfg, spec)
    thresholds = AttributeThresholds.fit(gen.images)
    is_forget = gen.prompt_index < gen.n_forget
    keep = _filter(cfg, spec, gen, thresholds, classifier)
    labels = torch.tensor([prompt_ids[gen.prompts[i]] for i in gen.prompt_index.tolist()])
    f_idx = torch.nonzero(is_forget & keep).flatten()
    r_idx = torch.nonzero(~is_forget & keep).flatten()
    g = cfg.data.generate
    if len(f_idx) == 0 or len(r_idx) == 0:
        side = "forget prompts" if len(f_idx) == 0 else "retain prompts"
        raise ConfigError(
            f"data.generate.filter: {g.filter!r} keeps none of the {g.per_prompt} images per "
            f"prompt of the {side}; expected none, or more images (data.generate.per_prompt)"
        )
    k = len(prompt_ids) + 1
    split = ForgetSplit(
        retain=ImageData(gen.latents[r_idx], labels[r_idx], k),
        forget=ImageData(gen.latents[f_idx], labels[f_idx], k),
        forget_mask=is_forget & keep,
    )
    none = torch.full((len(r_idx),), -1, dtype=torch.long)
    reference = ImageData(gen.images[r_idx], none, k)
    return PromptData(split, spec, thresholds), reference


def _filter(cfg: Config, spec: PromptSpec, gen: GeneratedSet, thresholds, classifier):
    """Per image: keep it (``data.generate.filter``)."""
    how = cfg.data.generate.filter
    if how == "none":
        return torch.ones(len(gen.images), dtype=torch.bool)
    target = spec.target
    if how == "clip" and target[0] != "clip" or target[0] == "clip" and target[1] is None:
        from unlearn.metrics.clip import ClipMeasure, resolve_clip_target

        measure = classifier if isinstance(classifier, ClipMeasure) else None
        if measure is None:
            measure = ClipMeasure.load(cfg.eval.clip_model)
        target = resolve_clip_target(spec, measure).target
    if target[0] == "clip":
        forget = target[1].shows(gen.images)
        a = target[1].assign(gen.images, spec.retain)
        own = torch.tensor([spec.retain.index(p) if p in spec.retain else -2 for p in gen.prompts])
        retain = a == own[gen.prompt_index]
    else:
        if classifier is None:
            raise ConfigError(
                "data.generate.filter: 'measure' needs the evaluation classifier; run "
                "`unlearn pretrain --config <your config>` first"
            )
        probs, _ = classifier.predict(gen.images)
        forget = shows(target, gen.images, None, thresholds, probs=probs)
        retain = torch.zeros(len(gen.images), dtype=torch.bool)
        for i, p in enumerate(gen.prompts[gen.n_forget :], start=gen.n_forget):
            rows = gen.prompt_index == i
            m = shows(_target("forget.retain_prompts", p), gen.images, None, thresholds, probs)
            retain |= rows & m & ~forget
    is_forget = gen.prompt_index < gen.n_forget
    return torch.where(is_forget, forget, retain)
