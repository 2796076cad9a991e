"""``unlearn run``: build model x method x agent from a config, unlearn, evaluate, track.

Everything is validated before the first optimiser step: the method must suit the model,
the forget set must be non-empty, λ must lie in [0, 1].
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.config import Config
from unlearn.metrics import EvalResult
from unlearn.runtime import ProgressFn, no_progress, resolve_device
from unlearn.unlearner import Unlearner, UnlearnResult

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything a driver needs to run (or reset) unlearning episodes."""

    cfg: Config
    unlearner: Unlearner
    base_model_dir: Path


def build(cfg: Config, model: torch.nn.Module | None = None) -> Setup:
    """Load the pretrained model and classifier, split the data, build method, agent, loop."""
    from unlearn.agents import get_agent
    from unlearn.data import inject_outlier, load_splits, split_forget
    from unlearn.methods import check_compatible as method_fits
    from unlearn.methods import get_method
    from unlearn.metrics import prepare
    from unlearn.models import check_compatible
    from unlearn.pretrain import load_pretrained

    method = get_method(cfg.method)
    agent = get_agent(cfg.agent, default_lam=cfg.method.lam)
    if cfg.model.kind == "t2i":
        from unlearn.t2i_task import load_t2i_task

        task = load_t2i_task(cfg, model, method)
        dev = resolve_device(cfg.device)
        task.model.to(dev)
        task.classifier.to(dev)
        unl = Unlearner(
            task.model, method, agent, task.data.split, cfg, dev, task.eval_data, task.classifier
        )
        return Setup(cfg, unl, task.model_dir)
    base, clf, pre = load_pretrained(cfg)
    model = model or base
    splits = load_splits(cfg.data)
    check_compatible(model, splits.train.channels, splits.train.resolution, "model")
    method_fits(method, model)
    train, outlier = inject_outlier(splits.train, cfg.forget)
    split = split_forget(train, cfg.forget, outlier)
    dev = resolve_device(cfg.device)
    model.to(dev)
    clf.to(dev)
    eval_data = prepare(model, cfg, splits, split)
    unl = Unlearner(model, method, agent, split, cfg, dev, eval_data, clf)
    return Setup(cfg, unl, pre.model_dir)


def run(
    cfg: Config,
    progress: ProgressFn = no_progress,
    evaluate: bool = True,
    before: EvalResult | None = None,
) -> UnlearnResult:
    """One tracked unlearning run: before/after evaluation, per-step λ, artifacts, status.

    ``before`` reuses an evaluation of the same base model (evaluations are deterministic).
    """
    from unlearn.models import save_model
    from unlearn.tracking import Tracker

    setup = build(cfg)
    unl = setup.unlearner
    tracker = Tracker(
        cfg,
        run_name=f"{cfg.method.name}-{cfg.agent.name}",
        tags={"unlearn.method": cfg.method.name, "unlearn.agent": cfg.agent.name},
    )
    tracker.log_params(cfg.to_dict())
    out = cfg.workdir_path / "unlearned" / (tracker.run_id or f"{cfg.method.name}-{cfg.agent.name}")
    out.mkdir(parents=True, exist_ok=True)
    status = "FAILED"
    try:
        if evaluate and before is None:
            progress("evaluate before", 0, 1)
            before, samples = unl.evaluate()
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
            _save_samples(cfg, after, samples, out, "after")
            tracker.log_metrics(after.metrics("eval/"))
            progress("evaluate after", 1, 1)
        tracker.log_metrics(
            {
                "perf/wall_time": result.wall_time,
                "perf/steps_per_s": result.steps / max(result.wall_time, 1e-9),
            }
        )
        save_model(unl.model.cpu(), out / "model")
        unl.model.to(unl.device)
        result.model_dir = str(out / "model")
        result.run_id = tracker.run_id
        plot_lambda({"λ": result.lambdas}, out / "lambda.png")
        (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
        for name in ("before.png", "after.png", "lambda.png", "result.json"):
            if (out / name).exists():
                tracker.log_artifact(out / name)
        if result.status == "diverged":
            tracker.set_tag("unlearn.failure", result.message)
        status = "FINISHED" if result.status == "finished" else "FAILED"
        return result
    finally:
        tracker.end(status)


def _save_samples(cfg: Config, result, samples: torch.Tensor, out: Path, name: str) -> None:
    """``<name>.png`` (the first 100 samples); t2i: per-prompt grids under ``<name>/`` and
    the overview row per prompt as ``<name>.png``."""
    import shutil

    from unlearn.metrics import save_grid

    if cfg.model.kind == "t2i":
        from unlearn.metrics.t2i import save_prompt_grids

        grid = save_prompt_grids(result, samples, out / name, cfg.t2i.samples_per_prompt)
        shutil.copyfile(grid, out / f"{name}.png")
        return
    save_grid(samples[:100], out / f"{name}.png", nrow=10)


def plot_lambda(series: dict[str, list[float]], path: Path) -> Path:
    """λ trajectories, one line per run or agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, lams in series.items():
        ax.plot(range(1, len(lams) + 1), lams, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.set_ylim(-0.02, 1.02)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
