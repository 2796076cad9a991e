"""Options every ``unlearn`` command shares, and loading the config they name (typer only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearn.config import default_config_path

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML experiment config (default: the embedded demo)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field: section.field=value (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def load_cli_config(config: Path | None, overrides: list[str] | None, tracked: bool = False):
    """The config of ``--config`` (or the embedded demo) with the ``--set`` overrides.

    ``tracked``: the command writes runs, so its tracking store is checked first (a server
    that is down is reported in seconds, before torch or mlflow load).
    """
    from unlearn.config import load_config

    cfg = load_config(config or default_config_path(), overrides or [])
    if tracked:
        from unlearn.tracking import preflight

        preflight(cfg)
    return cfg
