"""``unlearn rl ...``: train and evaluate RL λ agents.

Only typer is imported at module level; ray, torch and mlflow load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config

rl_app = typer.Typer(
    help="Train and evaluate RL λ agents (RLlib) on the unlearning env.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``rl`` group to ``app``."""
    app.add_typer(rl_app, name="rl")


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
    cfg = load_cli_config(config, set_, tracked=True)
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

    cfg = load_cli_config(config, set_)
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
