"""The Tune trainable: one trial = one ``make_unlearner`` (:mod:`unlearn.task`) + one pass over
``Unlearner.steps``.

There is no second training loop here. The trainable reads as Ray Tune's function-trainable
examples do: restore from a checkpoint, loop over the unlearner's steps, and report to Tune
every ``report_every`` steps (per-step metrics since the last report, the fixed-noise
proxies, ``tune/proxy_score`` for ASHA and PBT) together with a checkpoint: model, optimiser,
agent state, step counter and history. A restored trial (``--resume``, PBT exploit, a retried
failure) continues from that step; the unlearner draws step ``t``'s batches from a generator
seeded by ``(seed, t)``, so a restored run sees the same data as an uninterrupted one.
Every report names the Ray node it came from (``node_id``; the driver tags the trial's
child run with it). The last report carries the sample-based metrics (``eval/forget_rate``,
``eval/fid``) and ``tune/score``; its checkpoint holds them too, so re-running a finished
trial only re-reports.
With ``tune.objective=attacked_forget_rate`` the trial also attacks its unlearned model
(:mod:`unlearn.audit.attacked`) and the attacked forget rate (``audit/attacked_forget_rate``)
replaces the forget rate in ``tune/score`` and in the multi-objective search; with
``tune.objective=adversarial_concept_rate`` (pipelines) the adversarial-prompt attack's
post-attack concept rate (``audit/adversarial_concept_rate``) does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.tuners.space import SearchSpace

log = logging.getLogger(__name__)

NAN = float("nan")
#: keys the searchers read; intermediate reports carry NaN (Tune wants them in every result)
OBJECTIVE_KEYS = (
    "eval/forget_rate",
    "eval/fid",
    "tune/score",
    "audit/attacked_forget_rate",
    "audit/adversarial_concept_rate",
)
BAD_PROXY = 1e6  # proxy score of a diverged trial: finite, so ASHA / PBT can rank it
FINAL_KEY = "unlearn/final"  # marks the last report (PBT does not exploit there)
NODE_KEY = "node_id"  # the Ray node that made a report (a string: not an MLflow metric)


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a sweep shares (shipped to the workers once).

    Args:
        base: the experiment config as a plain mapping.
        space: the search space (fixed values, conditionals).
        report_every: optimiser steps between reports and checkpoints.
        cpus: CPUs given to each trial (torch threads match them).
        fid_weight: weight of FID in ``tune/score = forget term + fid_weight * fid`` (the
            forget term: the forget rate, or the attacked one per ``tune.objective``).
        proxy_forget_weight: weight of the forget proxy in ``tune/proxy_score``.
    """

    base: dict
    space: SearchSpace
    report_every: int
    cpus: float
    fid_weight: float
    proxy_forget_weight: float


def score(forget_rate: float, fid: float, fid_weight: float) -> float:
    """The single-objective trade-off (lower is better)."""
    return forget_rate + fid_weight * fid


def proxy_score(r: float, f: float, r0: float, f0: float, forget_weight: float) -> float:
    """``log(r/r0) - w·log(f/f0)`` on the fixed-noise proxies: keep retain, raise forget (min)."""
    vals = (r, f, r0, f0)
    if not all(math.isfinite(v) and v > 0 for v in vals):
        return BAD_PROXY
    return math.log(r / r0) - forget_weight * math.log(f / f0)


def step_metrics(stats) -> dict[str, float]:
    """One StepStats as namespaced per-step metrics (the MLflow keys of ``unlearn run``)."""
    from unlearn.tracking import STEP_KEYS

    out: dict[str, float] = {"step": stats.step}
    for attr, key in STEP_KEYS.items():
        v = getattr(stats, attr)
        if v is not None and math.isfinite(v):
            out[key] = float(v)
    return out


def run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """Function trainable (use with ``tune.with_parameters(run_trial, spec=...)``)."""
    start = time.perf_counter()  # setup time = imports + model, data and evaluation data
    import torch
    from ray import tune

    from unlearn.config import Config, from_mapping
    from unlearn.runtime import set_threads
    from unlearn.task import make_unlearner
    from unlearn.tuners.space import trial_config

    set_threads(max(1, int(spec.cpus)))
    base = from_mapping(Config, spec.base)
    cfg = trial_config(base, spec.space, config)
    unl = make_unlearner(cfg).unlearner

    # 1. restore: the trial's checkpoint (--resume, a retried failure) or a PBT exploit's
    state = _restore(unl, tune.get_checkpoint(), dict(config), base, spec.space)
    state["config"] = dict(config)
    if state.get("final") is not None:  # finished before the driver died: report, do not rerun
        _report(state["final"], unl, state)
        return
    if state.get("proxy0") is None:
        state["proxy0"] = list(unl.proxies())
    _add_time(state, "build_time", start)

    # 2. unlearn, reporting with a checkpoint every report_every steps
    every = max(1, spec.report_every)
    pending: list[dict[str, float]] = []  # per-step metrics since the last report
    clock = time.perf_counter()
    for stats in unl.steps():
        pending.append(step_metrics(stats))
        if unl.t % every == 0 and unl.t < cfg.unlearn.steps:
            _add_time(state, "unlearn_time", clock)
            metrics = {**_progress_metrics(unl, state, spec), **dict.fromkeys(OBJECTIVE_KEYS, NAN)}
            _report({**metrics, "steps": json.dumps(pending)}, unl, state)
            pending = []
            clock = time.perf_counter()
    res = unl.finish(clock)
    _add_time(state, "unlearn_time", clock)

    # 3. evaluate (and attack) the unlearned model: the last report, its checkpoint keeps it
    final: dict[str, Any] = {
        "unlearn/status": res.status,
        "lambdas": _lambdas(unl),
        "perf/threads": torch.get_num_threads(),
        FINAL_KEY: 1,
    }
    t0 = time.perf_counter()
    after, _ = unl.evaluate()
    final.update(after.metrics("eval/"))
    forget = after.forget_rate
    if cfg.tune.objective == "attacked_forget_rate":
        from unlearn.audit import attacked_rates

        rates = attacked_rates(unl, benign=False)
        final.update(rates.metrics())
        forget = rates.attacked_forget_rate
    elif cfg.tune.objective == "adversarial_concept_rate":
        from unlearn.audit import attacked_rates

        rates = attacked_rates(unl, benign=False, relearn_attack=False, adversarial=True)
        final.update(rates.metrics())
        forget = rates.adversarial_concept_rate
    final["tune/score"] = score(forget, after.fid, spec.fid_weight)
    final["perf/eval_time"] = time.perf_counter() - t0
    if res.status != "finished":
        final["unlearn/message"] = res.message
    state["final"] = {**_progress_metrics(unl, state, spec), **final}
    _report({**state["final"], "steps": json.dumps(pending)}, unl, state)


def _add_time(state: dict, key: str, since: float) -> None:
    """Add the seconds since ``since`` to ``state[key]`` (it sums over restores)."""
    state[key] = state.get(key, 0.0) + time.perf_counter() - since


def _progress_metrics(unl, state: dict, spec: TrialSpec) -> dict[str, Any]:
    r, f = unl.proxies()
    r0, f0 = state["proxy0"]
    last = unl.last
    return {
        "unlearn/step": unl.t,
        "unlearn/lambda": last.lam if last is not None else NAN,
        "unlearn/proxy_retain": r,
        "unlearn/proxy_forget": f,
        "tune/proxy_score": proxy_score(r, f, r0, f0, spec.proxy_forget_weight),
        "perf/unlearn_time": state.get("unlearn_time", 0.0),
        "perf/build_time": state.get("build_time", 0.0),
    }


def _lambdas(unl) -> list[float]:
    return [float(s.lam) for s in unl.history]


# -- checkpoints -----------------------------------------------------------------------------


def _config_agent(base, space: SearchSpace, params: dict[str, Any]):
    """The agent a trial with ``params`` starts with (PBT may have changed them)."""
    from unlearn.agents import get_agent
    from unlearn.tuners.space import trial_config

    c = trial_config(base, space, params)
    return get_agent(c.agent, default_lam=c.method.lam)


def _agent_state(agent) -> dict[str, Any]:
    """Learnable tensors plus plain numeric attributes (dual ascent keeps its λ there)."""
    scalars = {k: v for k, v in vars(agent).items() if isinstance(v, (bool, int, float))}
    return {"params": [p.detach().cpu() for p in agent.parameters()], "scalars": scalars}


def _save(unl, state: dict, d: Path) -> None:
    import torch

    payload = {
        "model": {k: v.detach().cpu() for k, v in unl.model.state_dict().items()},
        "opt": unl.opt.state_dict(),
        "agent": _agent_state(unl.agent),
        "agent_opt": unl.agent_opt.state_dict() if unl.agent_opt is not None else None,
        "t": unl.t,
        "history": [dataclasses.asdict(s) for s in unl.history],
        "state": {**state, "collapse": [unl.collapsed_at, unl.collapse_message]},
    }
    torch.save(payload, d / "trial.pt")


def _report(metrics: dict[str, Any], unl, state: dict) -> None:
    """``tune.report`` with a checkpoint (Tune copies it to the sweep's storage)."""
    import ray
    from ray import tune

    # the node the trial runs on (the driver tags its child run with it)
    metrics = {**metrics, NODE_KEY: ray.get_runtime_context().get_node_id()}
    with tempfile.TemporaryDirectory(prefix="unlearn-ckpt-") as d:
        _save(unl, state, Path(d))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _restore(unl, checkpoint, config: dict[str, Any], base, space: SearchSpace) -> dict[str, Any]:
    """Load a checkpoint into the freshly built unlearner; returns the trial's own state.

    A PBT exploit restores another trial's checkpoint under a perturbed config: the weights,
    optimiser moments, step and the agent's learned state carry over, while whatever the
    config sets (learning rates, a static agent's λ, a dual agent's step size) follows the
    new config. An agent attribute counts as config-set when the agents built from the old
    and the new config differ in it.
    """
    if checkpoint is None:
        return {}
    import torch

    from unlearn.types import StepStats

    with checkpoint.as_directory() as d:
        p = torch.load(Path(d) / "trial.pt", map_location="cpu", weights_only=True)
    unl.model.load_state_dict(p["model"])
    unl.opt.load_state_dict(p["opt"])
    for group in unl.opt.param_groups:
        group["lr"] = unl.cfg.unlearn.lr
    with torch.no_grad():
        for param, saved in zip(unl.agent.parameters(), p["agent"]["params"], strict=True):
            param.copy_(saved)
    old = p["state"].get("config", config)
    from_config = set()
    if old != config:
        a, b = vars(_config_agent(base, space, old)), vars(_config_agent(base, space, config))
        from_config = {k for k in p["agent"]["scalars"] if k in a and k in b and a[k] != b[k]}
    for k, v in p["agent"]["scalars"].items():
        if k not in from_config:
            setattr(unl.agent, k, v)
    if unl.agent_opt is not None and p["agent_opt"] is not None:
        unl.agent_opt.load_state_dict(p["agent_opt"])
        for group in unl.agent_opt.param_groups:
            group["lr"] = getattr(unl.agent, "lr", group["lr"])
    unl.t = int(p["t"])
    # the quality guard's flag survives a restore (its reference is the fresh build's start)
    unl.collapsed_at, unl.collapse_message = p["state"].get("collapse") or (None, "")
    unl.history = [StepStats(**s) for s in p["history"]]
    unl.last = unl.history[-1] if unl.history else None
    log.info("restored trial at step %d", unl.t)
    return dict(p["state"])
