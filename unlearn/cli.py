"""``unlearn``: the command line. Parses and dispatches only; the work lives in the library.

Heavy libraries (torch, diffusers, ray, mlflow) are imported inside the commands so that
``unlearn --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli_options import (  # noqa: F401 (default_config_path: public)
    ConfigOpt,
    JsonOpt,
    SetOpt,
    default_config_path,
    load_cli_config,
)

app = typer.Typer(
    help="Make generative models forget: unlearn classes or memorised samples from DDPMs, "
    "score models and VAEs, and choose the forgetting weight λ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_config = load_cli_config


@app.command()
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

    cfg = _config(config, set_)
    with progress_bars() as progress:
        res = run_pretrain(cfg, progress, force=force)
    console.print(f"base model:  {res.model_dir}")
    console.print(
        f"classifier:  {res.classifier_dir} (held-out accuracy {res.classifier_accuracy:.4f})"
    )


@app.command("eval")
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
    cfg = _config(config, set_)
    res = evaluate_dir(cfg, model_dir, classifier, out)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    from unlearn.console import console
    from unlearn.report import eval_table

    console.print(eval_table({"model": res.result}))
    console.print(f"sample grid: {res.grid}")


@app.command()
def demo(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: WORKDIR/reports/demo).")
    ] = None,
    parts: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated demo parts after the base evaluation, or 'all'. Default "
            "(the parts that fit 10 minutes on 2 CPU cores): policy (a held-out digit "
            "unlearned with the shipped demo-model RL policy beside a static λ and a decay, "
            "λ trajectories plotted) and t2i (ESD and constrained reverse-KL "
            "under the dual agent erase 'seven' from the shipped text-to-image pipeline). "
            "Opt-in: unlearn (the configured digit with static and variational λ), search "
            "(4-trial Optuna search on Ray Tune, Pareto plot), rl (smoke test only: PPO on "
            "the tiny env, exported policy)."
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Generated samples per evaluation, 10 to 100000 (sets eval.num_samples; "
            "default 200: the demo's time budget)."
        ),
    ] = None,
    t2i_samples: Annotated[
        int | None,
        typer.Option(
            help="Images per prompt in the text-to-image evaluations, 1 to 100000 (default 10)."
        ),
    ] = None,
) -> None:
    """The end-to-end demo on the embedded defaults (about 8 minutes on 2 CPU cores).

    Evaluates the shipped base model; unlearns a held-out digit with the shipped
    demo-model RL policy beside a static λ and a linear decay (λ trajectories plotted);
    erases "seven" from the text-to-image pipeline with ESD and with constrained
    reverse-KL under the dual agent; writes a markdown report and logs every
    run to MLflow. `--parts all` adds the configured digit under static and variational λ,
    a 4-trial search and an RL smoke test.
    """
    cfg = _config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars
    from unlearn.report import eval_table, parse_parts, run_demo
    from unlearn.tracking import tracking_uri

    chosen = parse_parts(parts) if parts is not None else None
    with progress_bars() as progress:
        rep = run_demo(cfg, out, progress, chosen, samples, t2i_samples)
    console.print(eval_table(rep.results, "demo summary"))
    console.print(f"report: {rep.path / 'report.md'}")
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        console.print(f"MLflow UI: unlearn ui --set workdir={cfg.workdir_path}")
    else:
        console.print(f"MLflow UI: {uri}")


@app.command("run")
def run_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Skip the sample-based evaluations.")
    ] = False,
) -> None:
    """Unlearn: model x method x λ agent for the configured budget, tracked in MLflow.

    Example: unlearn run --set method.name=siss --set agent.name=variational --set forget.classes=[7]
    """
    cfg = _config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars
    from unlearn.experiment import run

    with progress_bars(not json_) as progress:
        res = run(cfg, progress, evaluate=not no_eval)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2))
    else:
        from unlearn.report import eval_table

        if res.before is not None and res.after is not None:
            console.print(
                eval_table(
                    {"before": res.before, "after": res.after},
                    f"{cfg.method.name} + {cfg.agent.name} λ",
                )
            )
        console.print(f"steps: {res.steps}  wall time: {res.wall_time:.1f}s  status: {res.status}")
        console.print(f"model: {res.model_dir}")
        console.print(f"MLflow run id: {res.run_id}")
    if res.status != "finished":
        from unlearn.console import err_console

        err_console.print(f"[bold red]run stopped:[/] {res.message}")
        raise typer.Exit(1)


@app.command()
def runs(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: from config).")
    ] = None,
    sort: Annotated[
        str | None, typer.Option(help="Metric to sort by, ascending, e.g. eval/fid.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    json_: JsonOpt = False,
) -> None:
    """List MLflow runs of an experiment as a table."""
    from unlearn.console import console, table
    from unlearn.tracking import list_runs

    cfg = _config(config, set_)
    rows = list_runs(cfg, experiment, sort, limit)
    if json_:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    keys = ["eval/forget_rate", "eval/fid", "perf/wall_time"]
    console.print(
        table(
            f"runs of {experiment or cfg.tracking.experiment}",
            ["run_id", "name", "status", "method", "agent", *keys],
            [
                [
                    r["run_id"][:8],
                    r["name"],
                    r["status"],
                    r["method"],
                    r["agent"],
                    *[r.get(k) for k in keys],
                ]
                for r in rows
            ],
        )
    )


@app.command()
def bench(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    preset: Annotated[
        str,
        typer.Option(
            help="cpu: siss, siss-gradient, naive, neggrad, erasediff, vdu, constrained (+fdiv "
            "on class-conditional and t2i models, +esd on t2i) x static, schedule, variational, "
            "dual (+policy, "
            "hybrid with --policy), 3 seeds; full: every method x every agent, 5 seeds."
        ),
    ] = "cpu",
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods instead of the preset's.")
    ] = None,
    agents: Annotated[
        str | None, typer.Option(help="Comma-separated λ agents instead of the preset's.")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per held-out instance (default: preset's).")
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated METHOD:AGENT rows instead of methods x agents "
            "(esd:static,constrained:dual); not with --methods / --agents."
        ),
    ] = None,
    static_lam: Annotated[float | None, typer.Option(help="λ of the static agent.")] = None,
    static_from: Annotated[
        Path | None,
        typer.Option(help="Static λ from a sweep's best_config.yaml (or its sweep folder)."),
    ] = None,
    schedule_from: Annotated[
        Path | None, typer.Option(help="PBT schedule.json for the schedule agent (default cosine).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Exported RL policy dir: adds the policy agent.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: WORKDIR/reports/bench-PRESET).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Skip cells already finished in OUT/results.json.")
    ] = False,
    perf: Annotated[
        bool, typer.Option(help="Add a Performance section from benchmarks/ (slow).")
    ] = False,
    readme: Annotated[
        Path | None,
        typer.Option(help="README whose <!-- results:start/end --> section gets the table."),
    ] = None,
    tune_baselines: Annotated[
        int | None,
        typer.Option(
            help="Optuna trials for static (λ, s) and decay (start, end, s) on the TRAIN "
            "classes (env.train_instances) before the bench; the winners run held out."
        ),
    ] = None,
    audit: Annotated[
        bool,
        typer.Option(
            help="Attack every unlearned model: adds the attacked forget rate (relearning on "
            "audit.relearn_forget_samples forget samples for audit.attacked_steps steps), the "
            "forget rate after benign fine-tuning and the MIA AUC as columns."
        ),
    ] = False,
) -> None:
    """Which λ strategy should I use? Methods x λ agents on held-out classes x seeds.

    Every cell is a tracked unlearning run; the report gives mean ± 95% CI of forget rate,
    FID, coverage, steps to forget and wall time per (method, agent), marks what differs
    from the best cell (Welch's t-test), and plots the Pareto front and λ trajectories.
    On a memorisation config (forget.outlier.copies > 0, no forget.classes) the one instance
    is the memorised outlier and the forget rate is its outlier rate.

    Example: unlearn bench --config configs/tiny.yaml --methods siss,naive --seeds 3
    """
    from unlearn.bench import BenchOptions, parse_names, parse_rows, run_bench
    from unlearn.bench.matrix import AGENT_VARIANTS, METHOD_VARIANTS

    opts = BenchOptions(
        preset=preset,
        methods=parse_names(methods, tuple(METHOD_VARIANTS), "--methods"),
        agents=parse_names(agents, AGENT_VARIANTS, "--agents"),
        seeds=seeds,
        rows=parse_rows(rows),
        static_lam=static_lam,
        static_from=None if static_from is None else str(static_from),
        schedule_from=None if schedule_from is None else str(schedule_from),
        policy=None if policy is None else str(policy),
        out=None if out is None else str(out),
        resume=resume,
        perf=perf,
        readme=None if readme is None else str(readme),
        tune_baselines=tune_baselines,
        audit=audit,
    )
    cfg = _config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars, table

    with progress_bars(not json_) as progress:
        res = run_bench(cfg, opts, progress)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        from unlearn.bench import summary_rows

        cols, cells = summary_rows(res.summaries, res.threshold, lambda s: f"[bold]{s}[/]", True)
        console.print(table(f"bench {res.preset}: {len(res.runs)} runs", cols, cells))
        for name, reason in res.plan.skipped.items():
            console.print(f"left out {name}: {reason}", highlight=False)
        for t in res.plan.tuning.values():
            params = ", ".join(f"{k}={v:.3g}" for k, v in t["params"].items())
            console.print(
                f"tuned {t['method']} + {t['agent']} on train classes "
                f"{list(t['train_instances'])}: {params} ({t['trials']} trials, "
                f"{t['optimiser_steps']:,} optimiser steps)",
                highlight=False,
            )
        console.print(f"report: {res.path / 'bench.md'}")
        if res.parent_run_id:
            console.print(f"MLflow parent run: {res.parent_run_id}")
    if res.runs and all(r.status == "error" for r in res.runs):
        raise typer.Exit(1)


from unlearn.cli_rl import policy_app, rl_app  # noqa: E402

app.add_typer(rl_app, name="rl")
app.add_typer(policy_app, name="policy")


from unlearn.cli_tune import register as _register_tune  # noqa: E402

_register_tune(app)


from unlearn.cli_audit import register as _register_audit  # noqa: E402

_register_audit(app)


def main() -> None:
    """Console entry point: configuration and input errors exit with code 2 and one line."""
    from unlearn.config import ConfigError

    try:
        app()
    except ConfigError as e:
        from unlearn.console import err_console

        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
