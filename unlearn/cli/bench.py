"""``unlearn bench``: methods x λ agents on held-out classes x seeds.

Registered onto the main app by :func:`register`; the work lives in :mod:`unlearn.bench`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from unlearn.cli.options import ConfigOpt, JsonOpt, SetOpt, load_cli_config


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(bench)


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
    oracle: Annotated[
        int | None,
        typer.Option(
            help="Optuna trials of the per-instance oracle: rows METHOD:oracle-static / "
            "oracle-decay run the --tune-baselines search on each held-out instance itself "
            "and then its winner there (compute counted per instance)."
        ),
    ] = None,
    swept_from: Annotated[
        Path | None,
        typer.Option(
            help="An `unlearn tune` sweep folder (WORKDIR/tune/NAME): the METHOD:swept rows "
            "run its best trial's settings (λ, η, steps, ...) on the held-out instances."
        ),
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
    publish: Annotated[
        Path | None,
        typer.Option(
            help="benchmarks/results/NAME.json: keep the results there and regenerate the "
            "docs' results pages (docs/results/NAME.md)."
        ),
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
        swept_from=None if swept_from is None else str(swept_from),
        oracle=oracle,
        out=None if out is None else str(out),
        resume=resume,
        perf=perf,
        publish=None if publish is None else str(publish),
        tune_baselines=tune_baselines,
        audit=audit,
    )
    cfg = load_cli_config(config, set_, tracked=True)
    from unlearn.console import console, progress_bars, table

    with progress_bars(not json_) as progress:
        res = run_bench(cfg, opts, progress)
    if json_:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        from unlearn.bench import summary_rows
        from unlearn.bench.baselines import params_text, searched_on

        cols, cells = summary_rows(res.summaries, res.threshold, lambda s: f"[bold]{s}[/]", True)
        console.print(table(f"bench {res.preset}: {len(res.runs)} runs", cols, cells))
        for name, reason in res.plan.skipped.items():
            console.print(f"left out {name}: {reason}", highlight=False)
        for t in res.plan.tuning.values():
            params = params_text(t["params"])
            console.print(
                f"tuned {t['method']} + {t['agent']} on {searched_on(t)}: {params} "
                f"({t['trials']} trials, "
                f"{t['optimiser_steps']:,} optimiser steps)",
                highlight=False,
            )
        console.print(f"report: {res.path / 'bench.md'}")
        if res.parent_run_id:
            console.print(f"MLflow parent run: {res.parent_run_id}")
    if res.runs and all(r.status == "error" for r in res.runs):
        raise typer.Exit(1)
