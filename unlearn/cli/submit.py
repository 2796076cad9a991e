"""``unlearn submit``: run an ``unlearn`` command on a Ray cluster as a Ray job.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.submit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command(
        "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(submit)


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
    from unlearn.submit import parse_env
    from unlearn.submit import submit as submit_job

    entrypoint = list(ctx.args)
    if entrypoint and entrypoint[0] == "--":
        entrypoint = entrypoint[1:]

    def show(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    res = submit_job(address, entrypoint, parse_env(env or []), working_dir, follow, show)
    console.print(f"job {res.job_id}: {res.status}" + (f" ({res.message})" if res.message else ""))
    raise typer.Exit(res.exit_code)
