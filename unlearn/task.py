"""The task builder: a config -> its forget task -> the unlearning loop, written once.

Every driver (``unlearn run`` and ``unlearn eval``, the Gymnasium env, the Tune trainable,
the benchmarks) goes through :func:`make_unlearner`: it builds the method and the agent and
asks the config's model family (:mod:`unlearn.families`) for the forget task and the
:class:`~unlearn.unlearner.Unlearner`. The image families' task builder
(:func:`load_task`, :func:`retarget`) is re-exported here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from unlearn.config import Config
from unlearn.families import Setup, family_of
from unlearn.families.image.task import ForgetTask, has_forget_spec, load_task, retarget

__all__ = [
    "ForgetTask",
    "Setup",
    "base_evaluation",
    "has_forget_spec",
    "load_task",
    "make_unlearner",
    "retarget",
]


def make_unlearner(
    cfg: Config, *, model: torch.nn.Module | None = None, task: ForgetTask | None = None
) -> Setup:
    """The pretrained model and classifier, the forget task, method, agent, device, loop.

    ``model`` replaces the pretrained base model (its classifier is still loaded); ``task``
    reuses data already split for this config. Everything is validated before the first
    optimiser step: the method must suit the model, the forget set must be non-empty, λ
    must lie in [0, 1].
    """
    from unlearn.agents import get_agent
    from unlearn.methods import get_method

    method = get_method(cfg.method)
    agent = get_agent(cfg.agent, default_lam=cfg.method.lam, store=policy_store(cfg))
    return family_of(cfg).make_unlearner(cfg, method, agent, model=model, task=task)


def policy_store(cfg: Config) -> str:
    """The store a ``models:/`` policy path loads from: the run's own (``MLFLOW_TRACKING_URI``,
    ``tracking.uri`` or the workdir's ``mlflow.db``), where ``unlearn policy register`` puts
    policies; empty for any other path."""
    if not cfg.agent.path.startswith("models:/"):
        return ""
    from unlearn.tracking import tracking_uri

    return tracking_uri(cfg)


#: the config sections that decide the base model's evaluation, with the family's own
BASE_EVAL_SECTIONS = ("data", "forget", "model", "pretrain", "eval")


def base_eval_sections(cfg: Config) -> tuple[str, ...]:
    """The sections whose change changes the base model's evaluation (``t2i`` too on a
    pipeline, whose samples per prompt and guidance decide its rates)."""
    return (*BASE_EVAL_SECTIONS, *family_of(cfg).sections)


def weights_digest(*modules: torch.nn.Module | None) -> str:
    """SHA-256 of the modules' parameters and buffers (names, dtypes, shapes and bytes): two
    models with this digest compute the same thing."""
    import hashlib

    h = hashlib.sha256()
    for i, module in enumerate(modules):
        h.update(f"module {i}\n".encode())
        if module is None:
            continue
        for name, t in module.state_dict().items():
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def base_eval_key(cfg: Config, unlearner) -> str:
    """The cache key of an evaluation of ``unlearner``'s current weights under ``cfg``: its
    family, the sections that decide it, the model's and the classifier's weights, and the
    device type (a GPU's sums differ from a CPU's in the last digits)."""
    import hashlib

    parts = (
        family_of(cfg).name,
        cfg.digest(*base_eval_sections(cfg)),
        weights_digest(unlearner.model, unlearner.classifier),
        unlearner.device.type,
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def base_evaluation(cfg: Config, unlearner):
    """The evaluation of ``unlearner``'s starting weights, and its samples.

    The base model's evaluation is the same in every command that evaluates the same weights
    with the same settings and seeds (``unlearn run``, the env, the bench), so it is kept in
    ``<workdir>/cache/base_eval/`` under :func:`base_eval_key` and read back instead of
    sampled again. An entry that cannot be read is evaluated again and rewritten.
    """
    import json

    from safetensors.torch import load_file, save_file

    family = family_of(cfg)
    root = cfg.workdir_path / "cache" / "base_eval"
    key = base_eval_key(cfg, unlearner)
    meta, tensors = root / f"{key}.json", root / f"{key}.safetensors"
    try:
        result = family.result_from_dict(json.loads(meta.read_text()))
        samples = load_file(tensors)["samples"]
        logging.getLogger(__name__).info("base model's evaluation read from %s", meta)
        return result, samples
    except Exception:  # no entry yet, or a broken one: evaluate and (re)write it
        pass
    result, samples = unlearner.evaluate()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}"
    save_file({"samples": samples.detach().cpu().contiguous()}, f"{tmp}.safetensors")
    Path(f"{tmp}.json").write_text(json.dumps(result.to_dict()))
    os.replace(f"{tmp}.safetensors", tensors)  # the samples first: an entry is its .json
    os.replace(f"{tmp}.json", meta)
    return result, samples
