"""``unlearn tune``, ``unlearn ui`` and ``unlearn submit``: searches, the MLflow UI, Ray Jobs.

Registered onto the main app by :func:`register`. Only typer is imported at module level;
Ray, Optuna and MLflow load inside the commands (``unlearn --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli_options import ConfigOpt, SetOpt, load_cli_config

SearchOpt = Annotated[
    str,
    typer.Option(help="optuna | random (searchers) or pbt | pb2 (population, for λ schedules)."),
]


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("tune")(tune)
    app.command("ui")(ui)
    app.command(
        "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(submit)


_config = load_cli_config


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
    from unlearn.console import console, progress_bars
    from unlearn.tuners import SweepOptions, load_space, run_sweep

    cfg = _config(config, set_)
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


def ui(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on the embedded store (WORKDIR/mlflow.db), bound to 127.0.0.1."""
    import subprocess
    import sys

    from unlearn.config import ConfigError
    from unlearn.console import console
    from unlearn.tracking import check_server, tracking_uri

    cfg = _config(config, set_)
    uri = tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        console.print(f"runs are tracked on a server already: {uri}")
        return
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: {port} is out of range; expected 1..65535")
    check_server(uri)  # the store's folder exists and is writable
    import socket

    with socket.socket() as s:  # a taken port would end mlflow with a multi-line log
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise ConfigError(f"--port: {port} is in use on 127.0.0.1; choose another --port")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(cfg.workdir_path / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    console.print(f"MLflow UI: http://127.0.0.1:{port}  (store {uri}; Ctrl-C stops it)")
    proc = subprocess.Popen(cmd)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)


def submit(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Option(help="Ray dashboard URL of the cluster, e.g. http://HEAD:8265.")
    ],
    follow: Annotated[
        bool, typer.Option(help="Stream the job's logs and exit with its status.")
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the job (repeatable).")
    ] = None,
    working_dir: Annotated[
        Path,
        typer.Option(
            help="Uploaded as the job's working directory (without .venv, runs, .git, *.db)."
        ),
    ] = Path("."),
) -> None:
    """Run an unlearn command on a Ray cluster as a Ray job.

    Example: unlearn submit --address http://127.0.0.1:8265 --follow --
    unlearn tune --space configs/tune/static_siss.yaml --num-samples 16
    """
    import sys

    from unlearn.console import console
    from unlearn.jobs import parse_env
    from unlearn.jobs import submit as submit_job

    entrypoint = list(ctx.args)
    if entrypoint and entrypoint[0] == "--":
        entrypoint = entrypoint[1:]

    def show(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    res = submit_job(address, entrypoint, parse_env(env or []), working_dir, follow, show)
    console.print(f"job {res.job_id}: {res.status}" + (f" ({res.message})" if res.message else ""))
    raise typer.Exit(res.exit_code)
