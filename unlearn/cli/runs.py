"""``unlearn runs``: the MLflow runs of an experiment as a table.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.tracking`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(runs)


def runs(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: from config).")
    ] = None,
    sort: Annotated[
        str | None, typer.Option(help="Metric to sort by, ascending, e.g. eval/fid.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    json_: JsonOpt = False,
) -> None:
    """List MLflow runs of an experiment as a table."""
    from unlearn.console import console, table
    from unlearn.tracking import list_runs

    cfg = load_cli_config(config, set_)
    rows = list_runs(cfg, experiment, sort, limit)
    if json_:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    keys = ["eval/forget_rate", "eval/fid", "perf/wall_time"]
    console.print(
        table(
            f"runs of {experiment or cfg.tracking.experiment}",
            ["run_id", "name", "status", "method", "agent", *keys],
            [
                [
                    r["run_id"][:8],
                    r["name"],
                    r["status"],
                    r["method"],
                    r["agent"],
                    *[r.get(k) for k in keys],
                ]
                for r in rows
            ],
        )
    )
