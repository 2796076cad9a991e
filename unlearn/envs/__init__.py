"""Gymnasium environment wrapping the unlearner: the action is λ.

``import unlearn.envs`` registers ``unlearn/Unlearning-v0``::

    env = gymnasium.make("unlearn/Unlearning-v0", config=cfg)

The env class itself (torch, the models) is imported on first use; the observation layout
(:mod:`unlearn.observation`, re-exported here) is light and shared with the exported-policy
agent and the policy export.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from unlearn.observation import OBS_VERSION, SCALE_RANGE, ObservationBuilder, layout

ENV_ID = "unlearn/Unlearning-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="unlearn.envs.unlearning_env:UnlearningEnv")

__all__ = ["ENV_ID", "OBS_VERSION", "SCALE_RANGE", "ObservationBuilder", "UnlearningEnv", "layout"]


def __getattr__(name: str) -> Any:
    if name == "UnlearningEnv":
        from unlearn.envs.unlearning_env import UnlearningEnv

        return UnlearningEnv
    raise AttributeError(name)
