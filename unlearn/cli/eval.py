"""``unlearn eval``: evaluate a model directory (image model or text-to-image pipeline).

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.evaluation`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("eval")(eval_cmd)


def eval_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (or diffusers UNet dir).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the sample grid and metrics.json (default: MODEL_DIR/eval, "
            "WORKDIR/eval/... for the shipped models)."
        ),
    ] = None,
    classifier: Annotated[
        Path | None, typer.Option(help="Evaluation classifier dir (default: from the config).")
    ] = None,
) -> None:
    """Evaluate a model: forget rate, FID on classifier features, class coverage, proxies, NLL.

    A text-to-image pipeline directory: concept rate, paraphrase concept rate, retain
    accuracy, FID and per-prompt grids (default config: the embedded t2i demo config).
    """
    from unlearn.evaluation import evaluate_dir
    from unlearn.families import family_of_dir

    found = family_of_dir(model_dir)
    if config is None and found is not None and found.default_config is not None:
        config = found.default_config  # e.g. the embedded t2i demo config for a pipeline
    cfg = load_cli_config(config, set_)
    res = evaluate_dir(cfg, model_dir, classifier, out)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    from unlearn.console import console
    from unlearn.demo import eval_table

    console.print(eval_table({"model": res.result}))
    console.print(f"sample grid: {res.grid}")
