"""``unlearn run``: one tracked unlearning run.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.run`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("run")(run_cmd)


def run_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Skip the sample-based evaluations.")
    ] = False,
) -> None:
    """Unlearn: model x method x λ agent for the configured budget, tracked in MLflow.

    Example: unlearn run --set method.name=siss --set agent.name=variational --set forget.classes=[7]
    """
    cfg = load_cli_config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars
    from unlearn.run import run

    with progress_bars(not json_) as progress:
        res = run(cfg, progress, evaluate=not no_eval)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2))
    else:
        from unlearn.demo import eval_table

        if res.before is not None and res.after is not None:
            console.print(
                eval_table(
                    {"before": res.before, "after": res.after},
                    f"{cfg.method.name} + {cfg.agent.name} λ",
                )
            )
        console.print(f"steps: {res.steps}  wall time: {res.wall_time:.1f}s  status: {res.status}")
        console.print(f"model: {res.model_dir}")
        console.print(f"MLflow run id: {res.run_id}")
    if res.status != "finished":
        from unlearn.console import err_console

        err_console.print(f"[bold red]run stopped:[/] {res.message}")
        raise typer.Exit(1)
