"""``unlearn policy ...``: export RL λ policies and register them in MLflow.

Only typer is imported at module level; torch, onnx and mlflow load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config

policy_app = typer.Typer(
    help="Export RL λ policies (TorchScript / ONNX) and register them in MLflow.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``policy`` group to ``app``."""
    app.add_typer(policy_app, name="policy")


@policy_app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="RLlib algorithm (or RLModule) checkpoint.")],
    format_: Annotated[str, typer.Option("--format", help="torchscript or onnx.")] = "torchscript",
    out: Annotated[
        Path, typer.Option(help="Output folder for the policy file + metadata.json.")
    ] = Path("policy"),
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export the deterministic policy (network + unsquash, SAC's tanh) with JSON metadata."""
    from unlearn.console import console
    from unlearn.export.rllib import export_policy

    k = p = b = n = 0
    residual: dict = {}
    if config is not None or set_:  # for checkpoints without the training env's sidecar
        env = load_cli_config(config, set_).env
        k, p, b, n = env.steps_per_decision, env.proxy_every, env.proxy_batch, env.decisions
        residual = env.residual
    d = export_policy(
        checkpoint,
        out,
        format_,
        steps_per_decision=k,
        proxy_every=p,
        proxy_batch=b,
        residual=residual,
        decisions=n,
    )
    console.print(f"policy: {d}")


@policy_app.command("register")
def register_cmd(
    policy_dir: Annotated[Path, typer.Argument(help="Exported policy folder.")],
    name: Annotated[str, typer.Option(help="Registered model name.")],
    alias: Annotated[str, typer.Option(help="Alias to point at the new version.")] = "champion",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Log an exported policy to MLflow and register it (load back with models:/NAME@ALIAS)."""
    from unlearn.console import console
    from unlearn.export.registry import register_policy

    reg = register_policy(load_cli_config(config, set_), policy_dir, name, alias)
    if json_:
        typer.echo(
            json.dumps(
                {
                    "name": reg.name,
                    "version": reg.version,
                    "alias": reg.alias,
                    "run_id": reg.run_id,
                    "uri": reg.uri,
                }
            )
        )
        return
    console.print(f"registered {reg.name} version {reg.version} as {reg.uri} (run {reg.run_id})")
