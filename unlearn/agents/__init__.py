"""Every way to choose λ: static, schedule, variational (adaptive-λ SISS), dual ascent, hybrid.

``get_agent(cfg.agent, default_lam=cfg.method.lam)`` builds the configured agent after
validating ``agent.options`` against the agent's declared ``OPTIONS``. New agents (the
exported RL "policy" agent, the hybrid that wraps any of them) plug in with
:func:`register_agent`.
"""

from __future__ import annotations

from unlearn.agents.base import LambdaAgent
from unlearn.agents.dual import DualAscentAgent
from unlearn.agents.hybrid import HybridAgent
from unlearn.agents.options import DEFAULT_LAM, Opt, OptionError
from unlearn.agents.policy import PolicyAgent
from unlearn.agents.registry import AGENTS, build_agent, get_agent, register_agent, with_store
from unlearn.agents.schedule import ScheduleAgent
from unlearn.agents.static import StaticAgent
from unlearn.agents.variational import VariationalAgent

register_agent("hybrid", HybridAgent)
register_agent("policy", PolicyAgent)

__all__ = [
    "AGENTS",
    "DEFAULT_LAM",
    "DualAscentAgent",
    "HybridAgent",
    "LambdaAgent",
    "Opt",
    "OptionError",
    "ScheduleAgent",
    "StaticAgent",
    "VariationalAgent",
    "build_agent",
    "get_agent",
    "register_agent",
    "with_store",
]
