"""How a sweep searches, and the checks that refuse bad input before Ray starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unlearn.config import Config, ConfigError
from unlearn.tuners.space import SearchSpace

SEARCHES = ("optuna", "random", "pbt", "pb2")
SCHEDULERS = ("fifo", "asha", "pbt", "pb2")
OBJECTIVES = ("multi", "weighted")
POPULATION = ("pbt", "pb2")


@dataclass(frozen=True)
class SweepOptions:
    """How to search (everything else comes from the config's ``tune`` section).

    Args:
        search: ``optuna``, ``random``, ``pbt`` or ``pb2``.
        scheduler: ``asha`` (early stopping), ``fifo`` or None; ``pbt`` / ``pb2`` only
            together with the same ``search``.
        objective: ``multi`` (forget rate and FID → Pareto front) or ``weighted``
            (``forget_rate + tune.fid_weight * fid``).
        num_samples: trials (PBT: population size); default ``tune.num_samples``.
        max_concurrent: trials at once; default ``tune.max_concurrent``.
        name: sweep name (directory under ``WORKDIR/tune`` and MLflow parent run name).
        resume: continue the sweep ``name`` (or the newest one of this space and search).
        address: Ray cluster address; default: ``RAY_ADDRESS`` or a new local instance.
        points_to_evaluate: trial configs the Optuna study runs first.
    """

    search: str = "optuna"
    scheduler: str | None = None
    objective: str = "multi"
    num_samples: int | None = None
    max_concurrent: int | None = None
    name: str | None = None
    resume: bool = False
    address: str | None = None
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)

    @property
    def population(self) -> bool:
        return self.search in POPULATION


def check_options(opts: SweepOptions, space: SearchSpace) -> None:
    """Combinations Ray cannot run, refused before it starts."""
    s = opts.search
    if s not in SEARCHES:
        raise ConfigError(f"--search: {s!r} is not allowed; expected one of {', '.join(SEARCHES)}")
    if opts.scheduler is not None and opts.scheduler not in SCHEDULERS:
        allowed = ", ".join(SCHEDULERS)
        raise ConfigError(
            f"--scheduler: {opts.scheduler!r} is not allowed; expected one of {allowed}"
        )
    if opts.objective not in OBJECTIVES:
        raise ConfigError(
            f"--objective: {opts.objective!r} is not allowed; expected multi or weighted"
        )
    if opts.scheduler in POPULATION and s not in POPULATION:
        raise ConfigError(
            f"--scheduler {opts.scheduler} with --search {s}: PBT cannot share a run "
            f"with a search algorithm; use --search {opts.scheduler}"
        )
    if s in POPULATION and opts.scheduler not in (None, s):
        raise ConfigError(
            f"--search {s} is itself the scheduler; drop --scheduler {opts.scheduler}"
        )
    if s in POPULATION and opts.points_to_evaluate:
        raise ConfigError(
            f"--search {s}: PBT cannot share a run with a search algorithm "
            "(points to evaluate need one)"
        )
    if s in POPULATION and space.conditional:
        raise ConfigError(
            f"space {space.name}: conditional parameters need a searcher; PBT "
            "mutates a fixed set of parameters"
        )
    cat = [p.path for p in space.params if p.kind == "choice"]
    if s == "pb2" and cat:
        raise ConfigError(
            f"space {space.name}: params.{cat[0]}: PB2 needs numeric ranges, "
            "not choices (use --search pbt)"
        )
    for what, v in (("--num-samples", opts.num_samples), ("--max-concurrent", opts.max_concurrent)):
        if v is not None and v < 1:
            raise ConfigError(f"{what}: {v} is out of range; expected a value >= 1")


def check_tracking(cfg: Config) -> str | None:
    """The tracking URI, checked to answer; a server that is down stops the sweep here."""
    from unlearn.tracking import preflight

    return preflight(cfg)


def check_pretrained(cfg: Config) -> None:
    """Trials load the base model and classifier; a missing one stops the sweep here.

    On a cluster the workdir must be shared storage (or the models shipped in the package),
    since trials run on other nodes than the driver.
    """
    from unlearn.pretrain import locate

    model, clf = locate(cfg)
    if model is None or clf is None:
        what = "base model" if model is None else "classifier"
        raise ConfigError(
            f"model: no pretrained {what} for this config under {cfg.workdir_path}; "
            "run `unlearn pretrain --config <your config>` first"
        )


#: written by Ray's cluster launcher on the head of an autoscaling cluster (Tune looks there too)
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def check_cluster(cfg: Config) -> None:
    """Some node of the connected Ray cluster must offer everything one trial asks for.

    Tune would otherwise wait for the resources forever. Nodes an autoscaling cluster can
    still start count too (the node types of the launcher's config on the head).
    """
    import ray

    t = cfg.tune
    need = {
        "tune.cpus_per_trial": ("CPU", t.cpus_per_trial),
        "tune.gpus_per_trial": ("GPU", t.gpus_per_trial),
        **{f"tune.trial_resources.{k}": (k, float(v)) for k, v in t.trial_resources.items()},
    }
    need = {key: (name, v) for key, (name, v) in need.items() if v > 0}
    nodes = [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
    nodes += _autoscaled_node_types()
    if any(all(r.get(name, 0) >= v for name, v in need.values()) for r in nodes):
        return
    offered = sorted({k for r in nodes for k in r if not k.startswith(("node:", "accelerator"))})
    for key, (name, v) in need.items():
        most = max((r.get(name, 0.0) for r in nodes), default=0.0)
        if most < v:
            what = "offers it" if most == 0 else f"offers more than {most:g}"
            raise ConfigError(
                f"{key}: {v:g} {name} per trial, but no node of the Ray cluster {what} "
                f"(its resources: {', '.join(offered) or 'none'}); start a node that has it "
                f"(ray start --resources) or change {key}"
            )
    wanted = ", ".join(f"{name}={v:g}" for name, v in need.values())
    raise ConfigError(
        f"tune.trial_resources: no single node of the Ray cluster offers {wanted} at once; "
        "start one that does or ask for less per trial"
    )


def _autoscaled_node_types() -> list[dict[str, float]]:
    """The resources of the node types an autoscaling cluster may start ([] elsewhere)."""
    from pathlib import Path

    import yaml

    path = Path(BOOTSTRAP_CONFIG).expanduser()
    if not path.is_file():
        return []
    try:
        types = (yaml.safe_load(path.read_text()) or {}).get("available_node_types") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [dict(t.get("resources") or {}) for t in types.values() if isinstance(t, dict)]
