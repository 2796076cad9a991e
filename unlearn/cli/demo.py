"""``unlearn demo``: the end-to-end demo and its markdown report.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(demo)


def demo(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: WORKDIR/reports/demo).")
    ] = None,
    parts: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated demo parts after the base evaluation, or 'all'. Default "
            "(the parts that fit 10 minutes on 2 CPU cores): policy (a held-out digit "
            "unlearned with the shipped demo-model RL policy beside a static λ and a decay, "
            "λ trajectories plotted) and t2i (ESD and constrained reverse-KL "
            "under the dual agent erase 'seven' from the shipped text-to-image pipeline). "
            "Opt-in: unlearn (the configured digit with static and variational λ), search "
            "(4-trial Optuna search on Ray Tune, Pareto plot), rl (smoke test only: PPO on "
            "the tiny env, exported policy)."
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Generated samples per evaluation, 10 to 100000 (sets eval.num_samples; "
            "default 200: the demo's time budget)."
        ),
    ] = None,
    t2i_samples: Annotated[
        int | None,
        typer.Option(
            help="Images per prompt in the text-to-image evaluations, 1 to 100000 (default 10)."
        ),
    ] = None,
) -> None:
    """The end-to-end demo on the embedded defaults (about 8 minutes on 2 CPU cores).

    Evaluates the shipped base model; unlearns a held-out digit with the shipped
    demo-model RL policy beside a static λ and a linear decay (λ trajectories plotted);
    erases "seven" from the text-to-image pipeline with ESD and with constrained
    reverse-KL under the dual agent; writes a markdown report and logs every
    run to MLflow. `--parts all` adds the configured digit under static and variational λ,
    a 4-trial search and an RL smoke test.
    """
    cfg = load_cli_config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars
    from unlearn.demo import eval_table, parse_parts, run_demo
    from unlearn.demo.report import t2i_summary
    from unlearn.tracking import tracking_uri

    chosen = parse_parts(parts) if parts is not None else None
    with progress_bars() as progress:
        rep = run_demo(cfg, out, progress, chosen, samples, t2i_samples)
    console.print(eval_table(rep.results, "demo summary"))
    t2i = t2i_summary(rep.extra)
    if t2i:  # a pipeline's columns: concept, paraphrase, retain accuracy, FID
        console.print(eval_table(t2i, "demo summary: text-to-image"))
    console.print(f"report: {rep.path / 'report.md'}")
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        console.print(f"MLflow UI: unlearn ui --set workdir={cfg.workdir_path}")
    else:
        console.print(f"MLflow UI: {uri}")
