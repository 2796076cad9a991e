"""``unlearn tune``: searches over methods, λ agents and λ schedules on Ray Tune.

Registered onto the main app by :func:`register`. Only typer is imported at module level;
Ray, Optuna and MLflow load inside the commands (``unlearn --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, SetOpt, load_cli_config

SearchOpt = Annotated[
    str,
    typer.Option(help="optuna | random (searchers) or pbt | pb2 (population, for λ schedules)."),
]


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("tune")(tune)


def tune(
    space: Annotated[Path, typer.Option(help="Search-space YAML (configs/tune/*.yaml).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    search: SearchOpt = "optuna",
    num_samples: Annotated[
        int | None, typer.Option(help="Trials (default: tune.num_samples).")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Trials at once (default: tune.max_concurrent).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="asha: stop weak trials early on the per-step proxies.")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="multi: forget rate and FID (Pareto front); weighted: one score.")
    ] = "multi",
    name: Annotated[
        str | None, typer.Option(help="Sweep name (default: SPACE-SEARCH-time).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the sweep NAME (default: the newest of this space).")
    ] = False,
    address: Annotated[
        str | None, typer.Option(help="Ray address to join (default: RAY_ADDRESS or a local Ray).")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search methods and λ agents with Ray Tune: Optuna (+ASHA) or PBT / PB2 schedules.

    Each trial is one unlearning run; the sweep is an MLflow parent run with a child run per
    trial, and writes a Pareto-front plot, the best config and a results table.

    Example: unlearn tune --space configs/tune/static_vs_variational.yaml --num-samples 8
    """
    cfg = load_cli_config(config, set_)
    from unlearn.tracking import preflight

    preflight(cfg)  # a tracking server that is down: one line in seconds, before Ray loads
    from unlearn.console import console, progress_bars
    from unlearn.tuners import SweepOptions, load_space, run_sweep

    spc = load_space(space)
    opts = SweepOptions(
        search=search,
        scheduler=scheduler,
        objective=objective,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        name=name,
        resume=resume,
        address=address,
    )
    with progress_bars(not json_) as progress:
        res = run_sweep(cfg, spc, opts, progress)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        _print_sweep(res, console)
    if res.trials and all(t.status == "error" for t in res.trials):
        raise typer.Exit(1)


def _print_sweep(res, console) -> None:
    from unlearn.console import table

    keys = sorted({k for t in res.trials for k in t.params})
    last = [k.rsplit(".", 1)[-1] for k in keys]
    short = [x if last.count(x) == 1 else k for k, x in zip(keys, last, strict=True)]
    front = {t.trial_id for t in res.pareto}
    rows = sorted(res.trials, key=lambda t: (t.score is None, t.score or 0.0))
    console.print(
        table(
            f"sweep {res.name} ({res.search}, {len(res.trials)} trials)",
            ["trial", "status", *short, "forget rate", "FID", "score", "pareto"],
            [
                [
                    t.trial_id,
                    t.status,
                    *[t.params.get(k) for k in keys],
                    t.forget_rate,
                    t.fid,
                    t.score,
                    "*" if t.trial_id in front else "",
                ]
                for t in rows
            ],
        )
    )
    for k, v in res.artifacts.items():
        console.print(f"{k}: {v}")
    if res.best is not None:
        console.print(f"best trial: {res.best.trial_id}")
    if res.schedule is not None:
        console.print(f"replay: unlearn run --config {res.artifacts['best_config']}")
    if res.parent_run_id:
        console.print(f"MLflow parent run: {res.parent_run_id}")
