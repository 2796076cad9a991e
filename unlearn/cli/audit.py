"""``unlearn audit``: relearning attacks and membership inference on an unlearned model.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.audit`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("audit")(audit)


def audit(
    model_dir: Annotated[Path, typer.Argument(help="The unlearned model directory.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    base: Annotated[
        Path | None,
        typer.Option(
            help="The model it was unlearned from (default: the config's pretrained base "
            "model; required when MODEL_DIR is not an `unlearn run` output)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: RUN/audit beside an `unlearn run` output)."),
    ] = None,
) -> None:
    """Does the forgetting hold? Relearning attacks and membership inference, base vs unlearned.

    Fine-tunes copies of both models for audit.relearn_steps steps on retain data only and,
    separately, on audit.relearn_forget_samples forget samples, measuring the forget (or
    outlier) rate every audit.relearn_every steps; then the AUC of a fixed-noise loss
    attack telling forget samples from held-out ones. On a text-to-image pipeline
    (model.kind=t2i) also paraphrase leakage (the concept rate on forget.paraphrases) and
    concept inversion (one new token embedding learned from forget images for
    audit.inversion_steps steps on the frozen pipeline) and adversarial prompts
    (audit.adversarial_tokens words appended to each forget prompt, chosen by each model's
    own denoising loss on concept images; the concept rate before and after).
    audit.attacks picks a subset.
    Writes report.json and sample grids, logged to MLflow.

    Example: unlearn audit runs/unlearned/RUN_ID/model --config configs/demo.yaml
    """
    cfg = load_cli_config(config, set_)  # a bad config fails before torch loads
    from unlearn.audit import run_audit
    from unlearn.console import console, progress_bars

    with progress_bars(not json_) as progress:
        res = run_audit(cfg, model_dir, base, out, progress)
    if json_:
        typer.echo(json.dumps(res.report.to_dict(), indent=2))
        return
    from unlearn.audit import adversarial_rows, membership_rows, prompt_rows, relearn_rows
    from unlearn.console import table

    rep = res.report
    name = rep.metric.replace("_", " ")
    if rep.relearn:
        title = f"relearning attacks: {name} (returned at >= {rep.threshold:.3f})"
        console.print(table(title, *relearn_rows(rep)))
    if rep.membership:
        title = "membership inference (loss attack, 0.5 = chance)"
        console.print(table(title, *membership_rows(rep)))
    if rep.paraphrase or rep.inversion:
        title = "concept rate: paraphrase leakage and concept inversion"
        console.print(table(title, *prompt_rows(rep)))
    if rep.adversarial:
        title = "adversarial prompts: concept rate before and after (attack success rate)"
        console.print(table(title, *adversarial_rows(rep)))
    console.print(f"report: {res.path}  wall time: {res.wall_time:.1f}s")
    if res.run_id:
        console.print(f"MLflow run id: {res.run_id}")
