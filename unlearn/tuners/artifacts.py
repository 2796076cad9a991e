"""A sweep in the tracking store and on disk: the parent run, the report folder, the parent's artifacts.

The report folder ``WORKDIR/tune/<sweep>/report`` holds the Pareto-front plot, the results
table (CSV and markdown), the best trial's full config as YAML and ``sweep.json``; a PBT
sweep adds the λ trajectories of all trials and the winner's replayable ``schedule.json``
(its best config then replays it: ``agent.name: schedule``, ``agent.path: <schedule>``).
"""

from __future__ import annotations

import json
from pathlib import Path

from unlearn.config import Config
from unlearn.tuners.options import SweepOptions
from unlearn.tuners.results import (
    SweepResult,
    TrialResult,
    pareto_front,
    pick_best,
    write_schedule,
    write_tables,
)
from unlearn.tuners.space import SearchSpace, apply_params, trial_config


def parent_run(
    cfg: Config,
    space: SearchSpace,
    opts: SweepOptions,
    name: str,
    uri: str | None,
    n: int,
    resume_id: str | None = None,
) -> tuple[str | None, str | None]:
    """(run id, experiment id) of the sweep's parent run: a new one, or ``resume_id`` reopened."""
    if uri is None:
        return None, None
    from unlearn.tracking import Tracker

    if resume_id:
        tr = Tracker.resume(uri, resume_id)
        return resume_id, tr.experiment_id
    tr = Tracker(
        cfg,
        run_name=name,
        tags={"unlearn.sweep": name, "unlearn.kind": "sweep", "unlearn.search": opts.search},
    )
    tr.log_params(
        {
            **cfg.to_dict(),
            "sweep": {
                "space": space.name,
                "search": opts.search,
                "scheduler": opts.scheduler or "fifo",
                "objective": opts.objective,
                "num_samples": n,
                "max_concurrent": opts.max_concurrent or cfg.tune.max_concurrent,
            },
        }
    )
    return tr.run_id, tr.experiment_id


def finish(
    cfg: Config,
    space: SearchSpace,
    opts: SweepOptions,
    path: Path,
    trials: list[TrialResult],
    parent: str | None,
    uri: str | None,
    wall: float,
) -> SweepResult:
    """Pareto front, best trial, report files; the parent run gets them and ends."""
    import yaml

    from unlearn.metrics.plots import plot_lambda, plot_pareto

    out = path / "report"
    out.mkdir(exist_ok=True)
    front = pareto_front(trials, cfg.tune.objective)
    best = pick_best(trials, front)
    arts: dict[str, Path] = {"pareto_png": plot_pareto(trials, front, out / "pareto.png")}
    arts["results_csv"], arts["results_md"] = write_tables(trials, front, out)
    if best is not None:
        best_cfg = trial_config(cfg, space, best.params)
        if opts.population and best.lambdas:
            arts["schedule"] = write_schedule(
                best, out / "schedule.json", cfg.unlearn.steps, sweep=path.name, source=opts.search
            )
            replay = {
                "agent.name": "schedule",
                "agent.options": {},
                "agent.path": str(arts["schedule"]),
            }
            best_cfg = apply_params(best_cfg, replay)
        arts["best_config"] = out / "best_config.yaml"
        arts["best_config"].write_text(yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
    series = {t.trial_id: t.lambdas for t in trials if t.lambdas}
    if opts.population and series:
        arts["lambda_png"] = plot_lambda(series, out / "lambdas.png")
    result = SweepResult(
        path.name, path, opts.search, opts.objective, trials, front, best, parent, arts, wall
    )
    (out / "sweep.json").write_text(json.dumps(result.to_dict(), indent=1))
    if uri is not None and parent is not None:
        _log_parent(uri, parent, result, space)
    return result


def _log_parent(uri: str, parent: str, result: SweepResult, space: SearchSpace) -> None:
    from unlearn.tracking import Tracker

    tr = Tracker.attach(uri, parent)
    m = {
        "sweep/trials": len(result.trials),
        "sweep/pareto_size": len(result.pareto),
        "sweep/finished": sum(t.status == "finished" for t in result.trials),
        "perf/wall_time": result.wall_time,
    }
    best = result.best
    if best is not None:
        m.update(
            {"best/forget_rate": best.forget_rate, "best/fid": best.fid, "best/score": best.score}
        )
        tr.set_tag("unlearn.best_trial", best.trial_id)
    tr.log_metrics(m)
    for p in result.artifacts.values():
        tr.log_artifact(p)
    if space.source and Path(space.source).is_file():
        tr.log_artifact(space.source)
    tr.end("FINISHED")
