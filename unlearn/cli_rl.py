"""``unlearn rl ...`` and ``unlearn policy ...``: RL λ agents and their exported policies.

Only typer is imported at module level; ray, torch and mlflow load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli_options import ConfigOpt, JsonOpt, SetOpt, load_cli_config

rl_app = typer.Typer(
    help="Train and evaluate RL λ agents (RLlib) on the unlearning env.", no_args_is_help=True
)
policy_app = typer.Typer(
    help="Export RL λ policies (TorchScript / ONNX) and register them in MLflow.",
    no_args_is_help=True,
)

_config = load_cli_config


@rl_app.command("train")
def train_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    algo: Annotated[str | None, typer.Option(help="ppo or sac (default: rl.algo).")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Training iterations (default: rl.iterations).")
    ] = None,
    env_runners: Annotated[
        int | None, typer.Option("--env-runners", help="Ray env runners (default: rl.env_runners).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue from this algorithm checkpoint.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Checkpoint folder (default: WORKDIR/rl/ALGO-RUN).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Train a λ policy with RLlib (PPO or SAC), checkpointing every iteration.

    Example: unlearn rl train --config configs/tiny.yaml --algo ppo --iterations 3 --env-runners 1
    """
    cfg = _config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars
    from unlearn.rl.train import train

    with progress_bars(not json_) as progress:
        res = train(cfg, algo, iterations, env_runners, resume, out, progress)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    from unlearn.console import table

    console.print(
        table(
            f"{res.algo} training",
            ["iteration", "episode return", "mean λ"],
            [
                [i + 1, r, _mean(lams)]
                for i, (r, lams) in enumerate(zip(res.returns, res.lambdas, strict=True))
            ],
        )
    )
    console.print(f"checkpoint: {res.checkpoint}")
    console.print(f"MLflow run id: {res.run_id}")


def _mean(xs: list[float]) -> float:
    ok = [x for x in xs if x == x]
    return sum(ok) / len(ok) if ok else float("nan")


@rl_app.command("eval")
def eval_cmd(
    source: Annotated[
        str,
        typer.Argument(help="Algorithm checkpoint, exported policy dir, or models:/NAME@ALIAS."),
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seeds: Annotated[int, typer.Option(help="Seeds per held-out instance.")] = 3,
    lams: Annotated[str, typer.Option(help="Static λ baselines, comma-separated.")] = "0,0.5,1",
    split: Annotated[str, typer.Option(help="Instances: test (held-out) or train.")] = "test",
    json_: JsonOpt = False,
) -> None:
    """Run the learned policy and static-λ baselines on the held-out instances (mean ± std)."""
    from unlearn.config import ConfigError
    from unlearn.console import console, progress_bars
    from unlearn.rl.evaluate import evaluate

    cfg = _config(config, set_)
    try:
        lam_values = [float(x) for x in lams.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--lams: {lams!r} is not a comma-separated list of numbers") from None
    if split not in ("test", "train"):
        raise ConfigError(f"--split: {split!r} is not allowed; expected test or train")
    if seeds < 1:
        raise ConfigError(f"--seeds: {seeds} is not allowed; expected an integer >= 1")
    with progress_bars(not json_) as progress:
        rows = evaluate(cfg, source, seeds, lam_values, split, progress)
    if json_:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    from unlearn.console import table

    def pm(m: tuple[float, float]) -> str:
        return f"{m[0]:.4g} ± {m[1]:.2g}"

    console.print(
        table(
            f"{split} instances {list(getattr(cfg.env, split + '_instances'))}, {seeds} seeds",
            ["agent", "forget rate", "FID", "return", "diverged"],
            [
                [
                    r.agent,
                    pm(r.stat("forget_rate")),
                    pm(r.stat("fid")),
                    pm(r.stat("episode_return")),
                    sum(e.diverged for e in r.episodes),
                ]
                for r in rows
            ],
        )
    )


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
        env = _config(config, set_).env
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

    reg = register_policy(_config(config, set_), policy_dir, name, alias)
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
