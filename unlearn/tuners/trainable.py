"""The Tune trainable: one trial = one ``experiment.build`` + one ``Unlearner.run``.

There is no second training loop here. A step callback on the unlearner reports to Tune
every ``report_every`` steps (per-step metrics since the last report, the fixed-noise
proxies, ``tune/proxy_score`` for ASHA and PBT) together with a checkpoint: model, optimiser,
agent state, step counter and history. A restored trial (``--resume``, PBT exploit, a retried
failure) continues from that step; the unlearner draws step ``t``'s batches from a generator
seeded by ``(seed, t)``, so a restored run sees the same data as an uninterrupted one.
The last report carries the sample-based metrics (``eval/forget_rate``, ``eval/fid``) and
``tune/score``; its checkpoint holds them too, so re-running a finished trial only re-reports.
"""

from __future__ import annotations

import dataclasses
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
OBJECTIVE_KEYS = ("eval/forget_rate", "eval/fid", "tune/score")
BAD_PROXY = 1e6  # proxy score of a diverged trial: finite, so ASHA / PBT can rank it


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a sweep shares (shipped to the workers once).

    Args:
        base: the experiment config as a plain mapping.
        space: the search space (fixed values, conditionals).
        report_every: optimiser steps between reports and checkpoints.
        cpus: CPUs given to each trial (torch threads match them).
        fid_weight: weight of FID in ``tune/score = forget_rate + fid_weight * fid``.
        proxy_forget_weight: weight of the forget proxy in ``tune/proxy_score``.
        final_eval: run the sample-based evaluation at the end of each trial.
    """

    base: dict
    space: SearchSpace
    report_every: int
    cpus: float
    fid_weight: float
    proxy_forget_weight: float
    final_eval: bool = True


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
    from ray import tune

    from unlearn.config import Config, build
    from unlearn.experiment import build as build_setup
    from unlearn.runtime import set_threads
    from unlearn.tuners.space import trial_config

    start = time.perf_counter()
    set_threads(max(1, int(spec.cpus)))
    cfg = trial_config(build(Config, spec.base), spec.space, config)
    unl = build_setup(cfg).unlearner
    state = _restore(unl, tune.get_checkpoint())
    if state.get("final") is not None:  # finished before the driver died: report, do not rerun
        tune.report(state["final"], checkpoint=_checkpoint(unl, state))
        return
    if state.get("proxy0") is None:
        state["proxy0"] = list(unl.proxies())
    state["build_time"] = state.get("build_time", 0.0) + time.perf_counter() - start
    budget = cfg.unlearn.steps
    every = max(1, spec.report_every)
    pending: list[dict[str, float]] = []
    t_run = time.perf_counter()

    def report(extra: dict[str, Any], final: bool = False) -> None:
        nonlocal t_run
        now = time.perf_counter()
        state["unlearn_time"] = state.get("unlearn_time", 0.0) + now - t_run
        t_run = now
        metrics = {**_progress_metrics(unl, state, spec), **extra}
        metrics["steps"] = list(pending)
        pending.clear()
        if final:
            state["final"] = {k: v for k, v in metrics.items() if k != "steps"}
        tune.report(metrics, checkpoint=_checkpoint(unl, state))
        t_run = time.perf_counter()

    def on_step(stats) -> None:
        pending.append(step_metrics(stats))
        if unl.t % every == 0 and unl.t < budget:
            report(dict.fromkeys(OBJECTIVE_KEYS, NAN))

    res = unl.run(callbacks=[on_step])
    state["unlearn_time"] = state.get("unlearn_time", 0.0) + time.perf_counter() - t_run
    t_run = time.perf_counter()
    final: dict[str, Any] = {"unlearn/status": res.status, "lambdas": _lambdas(unl)}
    if spec.final_eval:
        t0 = time.perf_counter()
        after, _ = unl.evaluate()
        final.update(after.metrics("eval/"))
        final["tune/score"] = score(after.forget_rate, after.fid, spec.fid_weight)
        final["perf/eval_time"] = time.perf_counter() - t0
    else:
        final.update(dict.fromkeys(OBJECTIVE_KEYS, NAN))
    if res.status != "finished":
        final["unlearn/message"] = res.message
    # the evaluation is not unlearning time
    t_run = time.perf_counter()
    report(final, final=True)


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


def _agent_state(agent) -> dict[str, Any]:
    """Learnable tensors plus plain numeric attributes (dual ascent keeps its λ there)."""
    scalars = {k: v for k, v in vars(agent).items() if isinstance(v, (bool, int, float))}
    return {"params": [p.detach().cpu() for p in agent.parameters()], "scalars": scalars}


def _checkpoint(unl, state: dict):
    import torch
    from ray import tune

    payload = {
        "model": {k: v.detach().cpu() for k, v in unl.model.state_dict().items()},
        "opt": unl.opt.state_dict(),
        "agent": _agent_state(unl.agent),
        "agent_opt": unl.agent_opt.state_dict() if unl.agent_opt is not None else None,
        "t": unl.t,
        "history": [dataclasses.asdict(s) for s in unl.history],
        "state": state,
    }
    d = Path(tempfile.mkdtemp(prefix="unlearn-ckpt-"))
    torch.save(payload, d / "trial.pt")
    return tune.Checkpoint.from_directory(str(d))


def _restore(unl, checkpoint) -> dict[str, Any]:
    """Load a checkpoint into the freshly built unlearner; returns the trial's own state."""
    if checkpoint is None:
        return {}
    import torch

    from unlearn.types import StepStats

    with checkpoint.as_directory() as d:
        p = torch.load(Path(d) / "trial.pt", map_location="cpu", weights_only=True)
    unl.model.load_state_dict(p["model"])
    unl.opt.load_state_dict(p["opt"])
    with torch.no_grad():
        for param, saved in zip(unl.agent.parameters(), p["agent"]["params"], strict=True):
            param.copy_(saved)
    for k, v in p["agent"]["scalars"].items():
        setattr(unl.agent, k, v)
    if unl.agent_opt is not None and p["agent_opt"] is not None:
        unl.agent_opt.load_state_dict(p["agent_opt"])
    unl.t = int(p["t"])
    unl.history = [StepStats(**s) for s in p["history"]]
    unl.last = unl.history[-1] if unl.history else None
    log.info("restored trial at step %d", unl.t)
    return dict(p["state"])
