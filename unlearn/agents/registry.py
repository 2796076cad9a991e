"""Agent names -> classes, and the factory that validates ``agent.*`` config into an agent."""

from __future__ import annotations

import dataclasses

from unlearn.agents.base import LambdaAgent
from unlearn.agents.dual import DualAscentAgent
from unlearn.agents.options import OptionError, validate_options
from unlearn.agents.schedule import ScheduleAgent
from unlearn.agents.static import StaticAgent
from unlearn.agents.variational import VariationalAgent
from unlearn.config import AgentConfig, ConfigError

__all__ = [
    "AGENTS",
    "build_agent",
    "get_agent",
    "register_agent",
    "validate_options",
    "with_store",
]

AGENTS: dict[str, type[LambdaAgent]] = {
    cls.name: cls for cls in (StaticAgent, ScheduleAgent, VariationalAgent, DualAscentAgent)
}


def register_agent(name: str, cls: type[LambdaAgent]) -> type[LambdaAgent]:
    """Make ``cls`` available as ``agent.name=<name>``; usable as a class decorator argument.

    Agents that build other agents through this registry (the hybrid, whose coarse agent is
    any registered one) are registered by :mod:`unlearn.agents` rather than listed here, so
    the registry never imports them back.

    The place for the exported RL policy agent ("policy"): a ``LambdaAgent`` that loads the
    TorchScript file + JSON metadata from ``agent.path`` with torch alone (no Ray, no
    pickles), maps StepStats to the observation layout recorded in the metadata and applies
    the recorded action unsquash. It declares its ``OPTIONS`` and overrides
    ``from_options(options, default_lam, path)`` to read ``path``; the factory, the
    validation and the hybrid's ``coarse: {name: policy}`` then work unchanged.
    """
    if not (isinstance(cls, type) and issubclass(cls, LambdaAgent)):
        raise TypeError(f"{cls!r} is not a LambdaAgent subclass")
    if name in AGENTS and AGENTS[name] is not cls:
        raise ValueError(f"agent {name!r} is already registered as {AGENTS[name].__name__}")
    AGENTS[name] = cls
    return cls


def build_agent(
    name: str, options: dict | None, default_lam: float, path: str = "", prefix: str = "agent"
) -> LambdaAgent:
    """Validate ``options`` for agent ``name`` and build it (errors name ``<prefix>.options.<key>``)."""
    if name not in AGENTS:
        raise ConfigError(f"{prefix}.name: unknown agent {name!r}; allowed: {', '.join(AGENTS)}")
    cls = AGENTS[name]
    where = f"{prefix}.options"
    opts = validate_options(cls.OPTIONS, options, default_lam, where)
    try:
        return cls.from_options(opts, default_lam, path)
    except OptionError as e:
        # nested agents (the hybrid's coarse one) already carry their full prefix
        raise (e if e.prefix != "agent.options" else e.under(where)) from None


def get_agent(cfg: AgentConfig, default_lam: float, store: str = "") -> LambdaAgent:
    """The agent described by ``cfg``; ``default_lam`` (``method.lam``) fills λ defaults.

    ``store``: the tracking URI that a ``models:/NAME@ALIAS`` policy path resolves against
    unless ``agent.options.tracking_uri`` names one (a run passes its own store, where
    ``unlearn policy register`` put the policy).

    Raises :class:`ConfigError` naming ``agent.name`` or ``agent.options.<key>``, the value and
    what is allowed, before any work starts.
    """
    cfg = with_store(cfg, store)
    return build_agent(cfg.name, cfg.options, default_lam, cfg.path, "agent")


def with_store(cfg: AgentConfig, store: str) -> AgentConfig:
    """``cfg`` with its ``models:/`` policy (the policy agent, or the hybrid's coarse one)
    loading from ``store`` where no ``tracking_uri`` option is set."""
    if not store or not cfg.path.startswith("models:/"):
        return cfg
    options = dict(cfg.options)
    if cfg.name == "policy" and not options.get("tracking_uri"):
        options["tracking_uri"] = store
    coarse = options.get("coarse")
    if cfg.name == "hybrid" and isinstance(coarse, dict) and coarse.get("name") == "policy":
        inner = coarse.get("options") or {}
        if isinstance(inner, dict) and not inner.get("tracking_uri"):
            options["coarse"] = {**coarse, "options": {**inner, "tracking_uri": store}}
    return dataclasses.replace(cfg, options=options)
