"""``unlearn run``: one tracked unlearning run of the loop :func:`unlearn.task.make_unlearner`
builds (validated before the first optimiser step): evaluate, unlearn, evaluate, track."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from unlearn.config import Config
from unlearn.metrics import EvalResult
from unlearn.runtime import ProgressFn, no_progress, reporting
from unlearn.unlearner import Unlearner, UnlearnResult, guard_fid

log = logging.getLogger(__name__)


def run(
    cfg: Config,
    progress: ProgressFn = no_progress,
    evaluate: bool = True,
    before: EvalResult | None = None,
) -> UnlearnResult:
    """One tracked unlearning run: before/after evaluation, per-step λ, artifacts, status.

    ``before`` reuses an evaluation of the same base model (evaluations are deterministic).
    """
    import time

    from unlearn.task import base_evaluation, make_unlearner
    from unlearn.tracking import Tracker, TrackingError, preflight
    from unlearn.tracking.liveness import OUTPUT, mark_ended, mark_incomplete, owner_tags

    preflight(cfg)  # a tracking server that is down stops the run before the model loads
    with reporting(progress):  # a generated data set draws its bar
        setup = make_unlearner(cfg)
    unl = setup.unlearner
    tracker = Tracker(
        cfg,
        run_name=f"{cfg.method.name}-{cfg.agent.name}",
        # the owner (pid, host): a run whose process is killed is found and set KILLED later
        tags={"unlearn.method": cfg.method.name, "unlearn.agent": cfg.agent.name, **owner_tags()},
    )
    out = cfg.workdir_path / "unlearned" / (tracker.run_id or f"{cfg.method.name}-{cfg.agent.name}")
    out.mkdir(parents=True, exist_ok=True)
    mark_incomplete(out, tracker.run_id)  # until result.json, written last, says otherwise
    tracker.set_tag(OUTPUT, str(out))
    tracker.log_params(cfg.to_dict())
    status, result, t0 = "FAILED", None, time.perf_counter()
    try:
        if evaluate and before is None:
            progress("evaluate before", 0, 1)
            before, samples = base_evaluation(cfg, unl)  # cached across commands
            _save_samples(cfg, before, samples, out, "before")
            progress("evaluate before", 1, 1)
        if before is not None:
            tracker.log_metrics(before.metrics("before/"))
        result = unl.run(callbacks=[tracker.step_callback()], progress=progress)
        result.before = before
        if evaluate:
            progress("evaluate after", 0, 1)
            after, samples = unl.evaluate(before.forget_rate if before else None)
            result.after = after
            guard_fid(cfg, result, before, after)
            _save_samples(cfg, after, samples, out, "after")
            tracker.log_metrics(after.metrics("eval/"))
            progress("evaluate after", 1, 1)
        tracker.log_metrics(
            {
                "perf/wall_time": result.wall_time,
                "perf/steps_per_s": result.steps / max(result.wall_time, 1e-9),
            }
        )
        result.run_id = tracker.run_id
        _save_outputs(unl, result, out)
        for name in ("before.png", "after.png", "lambda.png", "result.json"):
            if (out / name).exists():
                tracker.log_artifact(out / name)
        status = track_status(tracker, result)
        tracker.flush()
        return result
    except TrackingError as e:
        # the store stopped answering: the unlearning is not lost, only its tracking
        if result is None:
            result = UnlearnResult(
                unl.t,
                time.perf_counter() - t0,
                "stopped",
                list(unl.history),
                before,
                message=str(e),
            )
        result.run_id, result.message = tracker.run_id, result.message or str(e)
        _save_outputs(unl, result, out)
        raise TrackingError(
            f"{e}; the run stopped at step {unl.t}; its outputs (model, "
            f"result.json, grids) are in {out}"
        ) from None
    except BaseException as e:  # a crash or Ctrl-C: the folder says the run failed
        mark_ended(out, "failed", (str(e).splitlines() or [type(e).__name__])[0])
        raise
    finally:
        tracker.end(status)


def track_status(tracker, result: UnlearnResult) -> str:
    """Tag a tracked run with how it ended (``unlearn.status``, the metric
    ``unlearn/collapsed``, the reason in ``unlearn.failure`` or ``unlearn.collapse``); returns
    the MLflow run status: a collapsed run is a result (FINISHED), a diverged one FAILED."""
    tracker.set_tag("unlearn.status", result.status)
    tracker.log_metrics({"unlearn/collapsed": float(result.status == "collapsed")})
    if result.status != "finished":
        key = "unlearn.collapse" if result.status == "collapsed" else "unlearn.failure"
        tracker.set_tag(key, result.message)
    return "FINISHED" if result.status in ("finished", "collapsed") else "FAILED"


def _save_outputs(unl: Unlearner, result: UnlearnResult, out: Path) -> None:
    """The run's local outputs: ``model/``, ``lambda.png`` and ``result.json`` in ``out``.

    The model and the plot are written once; a second call (tracking failed after the
    outputs were saved) only rewrites ``result.json``, which then carries the message.
    ``result.json`` is written last and atomically: a folder without it is incomplete (its
    ``INCOMPLETE.json`` says whether the run is running, failed or was killed)."""
    from unlearn.metrics import plot_lambda
    from unlearn.models import save_model
    from unlearn.tracking.liveness import write_result

    if result.model_dir is None:
        save_model(unl.model.cpu(), out / "model")
        unl.model.to(unl.device)
        result.model_dir = str(out / "model")
        plot_lambda({"λ": result.lambdas}, out / "lambda.png")
    write_result(out, result.to_dict())


def _save_samples(cfg: Config, result, samples: torch.Tensor, out: Path, name: str) -> None:
    """``<name>.png``, as the config's family draws it (the first 100 samples; a pipeline:
    one grid per prompt under ``<name>/`` and a row per prompt as ``<name>.png``)."""
    from unlearn.families import family_of

    family_of(cfg).save_samples(cfg, result, samples, out, name)
