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


def load_cli_config(config: Path | None, overrides: list[str] | None):
    """The config of ``--config`` (or the embedded demo) with the ``--set`` overrides."""
    from unlearn.config import load_config

    return load_config(config or default_config_path(), overrides or [])
