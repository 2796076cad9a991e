"""``unlearn pretrain``: train the base generative model and the evaluation classifier.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.pretrain`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(pretrain)


def pretrain(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Retrain even when a cached result exists.")] = False,
) -> None:
    """Train the base generative model and the evaluation classifier.

    Results are cached under WORKDIR/pretrained by a hash of the config; an interrupted run
    resumes from its last checkpoint. Shipped assets made by the same config are reused.
    """
    from unlearn.console import console, progress_bars
    from unlearn.pretrain import pretrain as run_pretrain

    cfg = load_cli_config(config, set_)
    with progress_bars() as progress:
        res = run_pretrain(cfg, progress, force=force)
    console.print(f"base model:  {res.model_dir}")
    console.print(
        f"classifier:  {res.classifier_dir} (held-out accuracy {res.classifier_accuracy:.4f})"
    )
