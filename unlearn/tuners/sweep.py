"""A sweep: validate, start (or join) Ray, run a Tuner, collect results, track in MLflow.

Searchers and schedulers (docs/searches.md):

- ``optuna``: Optuna TPE over a define-by-run space (conditionals), multi-objective
  (``eval/forget_rate``, ``eval/fid``, both minimised → Pareto front) or one weighted score;
  ``random``: the same with Optuna's random sampler. ``--scheduler asha`` stops trials early
  on ``tune/proxy_score`` (fixed-noise denoising losses, reported every few steps).
- ``pbt`` / ``pb2``: Population Based Training over λ (and other numeric parameters) for
  schedules. PBT replaces trials' configs mid-run, so it cannot share a run with a search
  algorithm (Ray refuses); the winner's λ over time is written as a replayable schedule.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unlearn.config import Config, ConfigError, from_mapping
from unlearn.families import family_of
from unlearn.runtime import ProgressFn, init_ray, no_progress
from unlearn.tuners.artifacts import finish, parent_run
from unlearn.tuners.options import (
    SweepOptions,
    check_cluster,
    check_options,
    check_pretrained,
    check_tracking,
)
from unlearn.tuners.results import SweepResult, TrialResult
from unlearn.tuners.space import SearchSpace, from_dict, to_dict, trial_config, validate_space
from unlearn.tuners.trainable import TrialSpec

log = logging.getLogger(__name__)

#: the forget term of each ``tune.objective`` as a reported metric
FORGET_KEYS = {
    "forget_rate": "eval/forget_rate",
    "attacked_forget_rate": "audit/attacked_forget_rate",
    "adversarial_concept_rate": "audit/adversarial_concept_rate",
}
META = "unlearn_sweep.json"  # config, space, options and parent run of a sweep (for --resume)


def check_objective(cfg: Config) -> None:
    """``tune.objective`` against the model family: the attack it names must apply."""
    family, objective = family_of(cfg), cfg.tune.objective
    allowed = ["forget_rate"]
    if family.attacked_rate:
        allowed.append("attacked_forget_rate")
    if "adversarial" in family.attacks:
        allowed.append("adversarial_concept_rate")
    if objective not in allowed:
        why = " (it attacks a text encoder)" if objective == "adversarial_concept_rate" else ""
        raise ConfigError(
            f"tune.objective: {objective!r} is not allowed for model.kind={cfg.model.kind}"
            f"{why}; expected one of {', '.join(allowed)}"
        )


def run_sweep(
    cfg: Config, space: SearchSpace, opts: SweepOptions, progress: ProgressFn = no_progress
) -> SweepResult:
    """Run (or resume) a sweep and return its trials, Pareto front, best trial and artifacts.

    Everything that can be wrong with the input (space, option combinations, missing
    pretrained models, a tracking server that is down) raises :class:`ConfigError` before
    Ray starts. A resumed sweep uses the config, space and options it was started with.
    """
    check_options(opts, space)
    path = _sweep_dir(cfg, space, opts)
    meta = json.loads((path / META).read_text()) if opts.resume else None
    if meta is not None:
        cfg, space = from_mapping(Config, meta["config"]), from_dict(meta["space"])
        opts = SweepOptions(
            **{**meta["options"], "resume": True, "name": path.name, "address": opts.address}
        )
    validate_space(space, cfg)
    check_objective(cfg)
    check_pretrained(trial_config(cfg, space, {}))
    uri = check_tracking(cfg)
    if meta is not None and meta.get("parent_run_id") and meta.get("uri") != uri:
        raise ConfigError(
            f"--resume: sweep {path.name} is tracked at {meta['uri']}, not {uri}; "
            f"set MLFLOW_TRACKING_URI={meta['uri']}"
        )
    t0 = time.perf_counter()
    started = init_ray(opts.address)
    try:
        check_cluster(cfg)  # a resource no node offers: one line now, not a wait forever
        # Tune prints tables and MLflow prints run links: the library logs them instead
        with contextlib.redirect_stdout(_LogWriter()):
            return _run(cfg, space, opts, path, uri, meta, progress, t0)
    finally:
        if started:
            import ray

            ray.shutdown()


def _sweep_dir(cfg: Config, space: SearchSpace, opts: SweepOptions) -> Path:
    from ray.tune import Tuner

    root = cfg.workdir_path / "tune"
    if not opts.resume:
        name = opts.name or f"{space.name}-{opts.search}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (root / name).exists():
            raise ConfigError(
                f"--name: sweep {name!r} already exists in {root}; pass --resume to "
                "continue it or choose another name"
            )
        return root / name
    if opts.name:
        path = root / opts.name
    else:
        found = [p for p in root.glob(f"{space.name}-{opts.search}-*") if (p / META).is_file()]
        if not found:
            raise ConfigError(
                f"--resume: no earlier {opts.search} sweep of space {space.name} in {root}"
            )
        path = max(found, key=lambda p: p.stat().st_mtime)
    if not (path / META).is_file() or not Tuner.can_restore(str(path)):
        raise ConfigError(f"--resume: {path} holds no sweep that can be resumed")
    return path


def _run(cfg, space, opts, path, uri, meta, progress, t0) -> SweepResult:
    from ray import tune

    from unlearn.tuners.callbacks import SweepCallback, flat_params
    from unlearn.tuners.trainable import run_trial

    # save the experiment state often: a killed driver loses at most this much bookkeeping;
    # every report carries a checkpoint, so Tune's "snapshotting too often" warning is expected
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    t = cfg.tune
    n = opts.num_samples or t.num_samples
    every = t.report_every or max(1, cfg.unlearn.steps // 10)
    spec = TrialSpec(
        base=cfg.to_dict(),
        space=space,
        report_every=every,
        cpus=t.cpus_per_trial,
        fid_weight=t.fid_weight,
        proxy_forget_weight=t.proxy_forget_weight,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec),
        {
            "cpu": t.cpus_per_trial,
            "gpu": t.gpus_per_trial,
            "custom_resources": dict(t.trial_resources),
        },
    )
    resume_id = meta.get("parent_run_id") if meta else None
    parent, exp_id = parent_run(cfg, space, opts, path.name, uri, n, resume_id)
    cb = SweepCallback(
        uri,
        exp_id,
        parent,
        path.name,
        functools.partial(flat_params, cfg.to_dict(), to_dict(space)),
        params_at_end=opts.population,
        total=n,
    )
    cb.progress = progress
    cb.parent.set_tag("unlearn.driver_node_id", _node_id())
    progress("trials", 0, n)
    if opts.resume:
        tuner = tune.Tuner.restore(
            str(path), trainable, resume_unfinished=True, resume_errored=True
        )
        internal = getattr(tuner, "_local_tuner", None)
        if internal is not None:  # the pickled callback has no progress hook and no client
            internal.get_run_config().callbacks = [cb]
    else:
        tuner = _new_tuner(cfg, space, opts, path, trainable, cb, n, every)
        path.mkdir(parents=True, exist_ok=True)
        options = {k: v for k, v in asdict(opts).items() if k not in ("resume", "address")}
        meta = {
            "config": cfg.to_dict(),
            "space": to_dict(space),
            "options": options,
            "parent_run_id": parent,
            "uri": uri,
        }
        (path / META).write_text(json.dumps(meta, indent=1))
    grid = tuner.fit()
    extra = other_table_keys(cfg)
    trials = [_trial_result(r, cb, extra) for r in grid]
    return finish(cfg, space, opts, path, trials, parent, uri, time.perf_counter() - t0)


def _new_tuner(cfg, space, opts, path, trainable, cb, n: int, every: int):
    from ray import tune

    from unlearn.tuners.searchers import tune_domains

    return tune.Tuner(
        trainable,
        param_space=tune_domains(space) if opts.population else {},
        tune_config=tune.TuneConfig(
            search_alg=_make_search(opts, space, cfg),
            scheduler=_make_scheduler(opts, space, cfg, math.ceil(cfg.unlearn.steps / every)),
            num_samples=n,
            max_concurrent_trials=opts.max_concurrent or cfg.tune.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            # a fresh actor per trial re-imports torch and diffusers (seconds per trial)
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=path.name,
            storage_path=str(path.parent),
            callbacks=[cb],
            # PBT restores trials from other trials' older checkpoints: keep them all
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if opts.population else 2),
            # a failed trial is retried from its last checkpoint up to this many times
            failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
            verbose=0,
        ),
    )


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _make_search(opts: SweepOptions, space: SearchSpace, cfg: Config):
    if opts.population:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from unlearn.tuners.optuna_search import SweepOptunaSearch
    from unlearn.tuners.searchers import OptunaSpace

    sampler = (
        optuna.samplers.RandomSampler(seed=cfg.tune.seed)
        if opts.search == "random"
        else optuna.samplers.TPESampler(seed=cfg.tune.seed)
    )
    multi = ([FORGET_KEYS[cfg.tune.objective], "eval/fid"], ["min", "min"])
    metric, mode = multi if opts.objective == "multi" else ("tune/score", "min")
    return SweepOptunaSearch(
        OptunaSpace(space),
        metric=metric,
        mode=mode,
        sampler=sampler,
        points_to_evaluate=opts.points_to_evaluate or None,
    )


def _make_scheduler(opts: SweepOptions, space: SearchSpace, cfg: Config, n_reports: int):
    from unlearn.tuners.searchers import bounds, clip, tune_domains

    kind = opts.scheduler or (opts.search if opts.population else None)
    common: dict[str, Any] = {
        "time_attr": "training_iteration",
        "metric": "tune/proxy_score",
        "mode": "min",
    }
    if kind == "asha":
        from ray.tune.schedulers import ASHAScheduler

        n = max(1, n_reports)
        return ASHAScheduler(
            max_t=n, grace_period=min(cfg.tune.grace_period, n), reduction_factor=2, **common
        )
    if kind not in ("pbt", "pb2"):
        return None
    from unlearn.tuners.schedulers import SweepPB2, SweepPBT

    # synchronous generations: a function trainable can only offer its latest checkpoint, so
    # in asynchronous PBT a clone may copy a donor that has already moved on (or finished)
    common.update(
        perturbation_interval=cfg.tune.perturbation_interval,
        synch=True,
        custom_explore_fn=functools.partial(clip, space),
    )
    if kind == "pbt":
        return SweepPBT(hyperparam_mutations=tune_domains(space), **common)
    return SweepPB2(hyperparam_bounds=bounds(space), **common)


class _LogWriter(io.TextIOBase):
    """A text stream whose lines go to this module's logger."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("%s", line)
        return len(text)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _trial_result(r, cb, extra: tuple[str, ...] = ()) -> TrialResult:
    m = dict(r.metrics or {})
    tid = Path(r.path).name  # the trial directory is named by the trial id
    fr, fid, score = (
        _num(m.get("eval/forget_rate")),
        _num(m.get("eval/fid")),
        _num(m.get("tune/score")),
    )
    if r.error is not None:
        status = "error"
    elif fr is not None or score is not None:
        ended = m.get("unlearn/status")
        status = ended if ended in ("diverged", "collapsed") else "finished"
    else:
        status = "early_stopped"
    return TrialResult(
        trial_id=tid,
        params=dict(r.config or {}),
        status=status,
        forget_rate=fr,
        fid=fid,
        score=score,
        attacked_forget_rate=_num(m.get("audit/attacked_forget_rate")),
        adversarial_concept_rate=_num(m.get("audit/adversarial_concept_rate")),
        proxy_score=_num(m.get("tune/proxy_score")),
        steps=int(m.get("unlearn/step", 0) or 0),
        lambdas=list(m.get("lambdas") or []),
        unlearn_time=float(m.get("perf/unlearn_time", 0.0) or 0.0),
        build_time=float(m.get("perf/build_time", 0.0) or 0.0),
        eval_time=float(m.get("perf/eval_time", 0.0) or 0.0),
        trial_time=cb.wall.get(tid),
        run_id=cb.runs.get(tid),
        node_ids=list(cb.nodes.get(tid, [])),
        restarts=cb.restarts.get(tid, 0),
        metrics={k: v for k in extra if (v := _num(m.get(f"eval/{k}"))) is not None},
    )


#: the evaluation figures every sweep table shows (a family's primary rate is its forget rate)
TABLE_SHOWN = ("forget_rate", "fid", "concept_rate", "outlier_rate")


def other_table_keys(cfg: Config) -> tuple[str, ...]:
    """The family's other results-table figures (a pipeline's paraphrase concept rate and
    retain accuracy), which a sweep's table shows beside the forget rate and FID."""
    keys = family_of(cfg).result_type.table_keys
    return tuple(k for k in keys if k not in TABLE_SHOWN)
