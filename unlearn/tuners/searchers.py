"""A parsed search space in each searcher's language: Optuna's define-by-run function,
Ray Tune domains (PBT / PB2 populations and mutations), PB2 bounds, PBT's clipping.

The parsing and validation of the space itself is :mod:`unlearn.tuners.space`.
"""

from __future__ import annotations

from typing import Any

from unlearn.tuners.space import SearchSpace


class OptunaSpace:
    """Define-by-run Optuna space (conditionals need it); picklable for Tune's resume."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial) -> dict[str, Any]:
        values = dict(self.space.fixed)
        for p in self.space.params:
            if not p.active(values):
                continue
            if p.kind == "choice":
                v = trial.suggest_categorical(p.path, list(p.values))
            elif p.kind == "float":
                v = trial.suggest_float(p.path, p.low, p.high, log=p.log)
            else:
                v = trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log)
            values[p.path] = v
        return {}  # the captured suggestions are the trial's config


def tune_domains(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune domains (no conditionals): the PBT / PB2 initial population and mutations."""
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.params:
        if p.kind == "choice":
            out[p.path] = tune.choice(list(p.values))
        elif p.kind == "float":
            out[p.path] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
        else:
            out[p.path] = (tune.lograndint if p.log else tune.randint)(int(p.low), int(p.high) + 1)
    return out


def bounds(space: SearchSpace) -> dict[str, list[float]]:
    """``{path: [low, high]}`` of the numeric parameters (PB2's ``hyperparam_bounds``)."""
    return {p.path: [p.low, p.high] for p in space.params if p.kind != "choice"}


def clip(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """Keep PBT's perturbed values (x0.8 / x1.2) inside the declared ranges."""
    out = dict(config)
    for p in space.params:
        if p.kind != "choice" and p.path in out:
            v = min(p.high, max(p.low, out[p.path]))
            out[p.path] = int(round(v)) if p.kind == "int" else float(v)
    return out
