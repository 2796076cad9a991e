"""The task builder: a config -> its forget task -> the unlearning loop, written once.

Every driver (``unlearn run`` and ``unlearn eval``, the Gymnasium env, the Tune trainable,
the benchmarks) goes through :func:`make_unlearner`: it builds the method and the agent and
asks the config's model family (:mod:`unlearn.families`) for the forget task and the
:class:`~unlearn.unlearner.Unlearner`. The image families' task builder
(:func:`load_task`, :func:`retarget`) is re-exported here.
"""

from __future__ import annotations

import torch

from unlearn.config import Config
from unlearn.families import Setup, family_of
from unlearn.families.image.task import ForgetTask, has_forget_spec, load_task, retarget

__all__ = ["ForgetTask", "Setup", "has_forget_spec", "load_task", "make_unlearner", "retarget"]


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
