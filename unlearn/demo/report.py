"""The demo and its markdown report."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from unlearn.config import Config, ConfigError
from unlearn.console import table
from unlearn.metrics import EvalResult
from unlearn.metrics.evaluate import TABLE_KEYS
from unlearn.runtime import ProgressFn, no_progress


def eval_table(results: dict[str, EvalResult], title: str = "evaluation") -> Table:
    keys = TABLE_KEYS
    shown = {r.table_keys for r in results.values()}
    if len(shown) == 1:  # one family's results: its own columns
        keys = shown.pop()
    rows = [[name, *[getattr(r, k) for k in keys]] for name, r in results.items()]
    return table(title, ["run", *keys], rows)


def t2i_summary(extra: dict[str, dict]) -> dict[str, EvalResult]:
    """The text-to-image part's rows for the printed summary: the base pipeline, then each
    method's erased pipeline (empty when that part did not run)."""
    from unlearn.families import FAMILIES

    runs = {"t2i": "ESD, static λ", "t2i-constrained-dual": "constrained, dual λ"}
    done = {name: extra[key] for key, name in runs.items() if extra.get(key, {}).get("after")}
    if not done:
        return {}
    family = FAMILIES["t2i"]
    first = next(iter(done.values()))
    rows = {"t2i: before": family.result_from_dict(first["before"])}
    rows.update({f"t2i: {n}": family.result_from_dict(r["after"]) for n, r in done.items()})
    return rows


def markdown_table(results: dict[str, EvalResult]) -> str:
    head = "| run | " + " | ".join(TABLE_KEYS) + " |"
    sep = "|---" * (len(TABLE_KEYS) + 1) + "|"
    lines = [head, sep]
    for name, r in results.items():
        cells = [f"{getattr(r, k):.4g}" for k in TABLE_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class DemoReport:
    """Where the report went and what it shows."""

    path: Path
    results: dict[str, EvalResult] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    extra: dict[str, dict] = field(default_factory=dict)


DEMO_PARTS = ("unlearn", "search", "policy", "rl", "t2i")
#: what ``unlearn demo`` (and ``make demo``) runs without ``--parts``: the parts that fit the
#: demo's 10-minute budget on 2 CPU cores; ``--parts all`` runs every part
DEFAULT_PARTS = ("policy", "t2i")
#: generated samples per evaluation in the demo (its time budget; ``unlearn demo --samples``)
DEMO_SAMPLES = 200
#: images per prompt in the demo's text-to-image evaluations (``unlearn demo --t2i-samples``)
DEMO_T2I_SAMPLES = 10


def _check_parts(parts: tuple[str, ...], given: object) -> tuple[str, ...]:
    """``parts`` if every name is a demo part (``("all",)``: every part), else a ConfigError."""
    if parts == ("all",):
        return DEMO_PARTS
    bad = sorted(set(parts) - set(DEMO_PARTS))
    if bad or not parts:
        raise ConfigError(
            f"--parts: {bad or repr(given)} not allowed; expected 'all' or a comma-separated "
            f"subset of {list(DEMO_PARTS)}"
        )
    return parts


def parse_parts(text: str) -> tuple[str, ...]:
    """``--parts``: comma-separated part names, or ``all``; unknown names are a ConfigError."""
    return _check_parts(tuple(p.strip() for p in text.split(",") if p.strip()), text)


def _demo_value(cfg: Config, option: str, key: str, value: int) -> Config:
    """``cfg`` with ``key`` set to ``value`` under the config's own bounds; errors name ``option``."""
    from unlearn.config import with_overrides

    try:
        return with_overrides(cfg, [f"{key}={value}"])
    except ConfigError as e:
        raise ConfigError(f"{option}: {e}") from None


def run_demo(
    cfg: Config,
    out: Path | None = None,
    progress: ProgressFn = no_progress,
    parts: tuple[str, ...] | None = None,
    samples: int | None = None,
    t2i_samples: int | None = None,
) -> DemoReport:
    """Evaluate the (shipped or cached) base model, then run the demo's ``parts``.

    ``policy`` (default): a held-out class unlearned with the shipped RL policy (trained on
    the demo model), a static λ and a linear decay, with the λ trajectories; ``t2i``
    (default): erase "seven" from the shipped text-to-image pipeline with ESD (static λ)
    and constrained reverse-KL (dual λ); ``unlearn``: forget the
    configured classes with static and variational λ; ``search``: a 4-trial
    static-vs-variational search with its Pareto plot; ``rl``: a smoke test of the RL
    pipeline (PPO for a few iterations on the tiny env, export the policy, unlearn with it).
    Every evaluation generates ``samples`` images (default ``DEMO_SAMPLES``; it sets
    ``eval.num_samples``), the text-to-image ones ``t2i_samples`` per prompt (default
    ``DEMO_T2I_SAMPLES``; it sets ``t2i.samples_per_prompt``), both within the config's own
    bounds. The report is rewritten after each part, so an interrupted demo still leaves
    what it finished.
    """
    parts = DEFAULT_PARTS if parts is None else _check_parts(tuple(parts), parts)
    cfg = _demo_value(
        cfg, "--samples", "eval.num_samples", DEMO_SAMPLES if samples is None else samples
    )
    t2i_samples = DEMO_T2I_SAMPLES if t2i_samples is None else t2i_samples
    if "t2i" in parts:
        cfg = _demo_value(cfg, "--t2i-samples", "t2i.samples_per_prompt", t2i_samples)
    from unlearn.data import load_splits
    from unlearn.metrics import evaluate, prepare, save_grid, save_histogram
    from unlearn.pretrain import load_pretrained
    from unlearn.runtime import resolve_device

    out = Path(out).resolve() if out else cfg.workdir_path / "reports" / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    rep = DemoReport(out)
    model, clf, pre = load_pretrained(cfg)
    model.to(resolve_device(cfg.device))
    splits = load_splits(cfg.data)
    progress("evaluate base model", 0, 1)
    data = prepare(model, cfg, splits, None)
    base, images = evaluate(model, clf, cfg, data)
    progress("evaluate base model", 1, 1)
    rep.results["base"] = base
    save_grid(images[:100], out / "base_samples.png", nrow=10)
    save_histogram(
        base.class_hist,
        out / "base_class_hist.png",
        "base model: predicted classes",
        tuple(cfg.forget.classes),
    )
    rep.sections.append(
        "## Base model\n\n"
        f"- model: `{pre.model_dir}`\n- classifier: `{pre.classifier_dir}` "
        f"(held-out accuracy {pre.classifier_accuracy:.4f})\n"
        f"- {base.num_samples} samples, {cfg.eval.sampler_steps} DDIM steps, seed {cfg.eval.seed}\n"
        f"- samples classified with confidence >= {cfg.eval.confidence}: {base.confident:.3f}\n\n"
        "![samples](base_samples.png)\n\n![class histogram](base_class_hist.png)\n"
    )
    write_report(cfg, rep)
    if "unlearn" in parts and cfg.forget.classes:
        unlearn_section(cfg, rep, base, progress)
        write_report(cfg, rep)
    if "search" in parts and cfg.forget.classes:
        search_section(cfg, rep, progress)
        write_report(cfg, rep)
    if "policy" in parts:
        from unlearn.demo.policy import policy_section

        rep.extra["policy"] = policy_section(cfg, rep.sections, out, progress, rep.results)
        write_report(cfg, rep)
    if "rl" in parts:
        rl_section(cfg, rep, progress)
        write_report(cfg, rep)
    if "t2i" in parts:
        from unlearn.demo.t2i import t2i_section

        rep.extra.update(t2i_section(cfg, rep.sections, out, progress, cfg.t2i.samples_per_prompt))
        write_report(cfg, rep)
    return rep


DEMO_AGENTS = (("static", []), ("variational", []))


def unlearn_section(cfg: Config, rep: DemoReport, base: EvalResult, progress: ProgressFn) -> None:
    """Forget the configured class with SISS under a static and a variational λ."""
    import shutil

    from unlearn.config import with_overrides
    from unlearn.metrics.plots import plot_lambda
    from unlearn.run import run

    lams: dict[str, list[float]] = {}
    lines = [
        "## Unlearning",
        "",
        f"Forget classes {list(cfg.forget.classes)} with `{cfg.method.name}` "
        f"({cfg.unlearn.steps} steps, batch {cfg.unlearn.batch_size}).",
        "",
        "| agent | forget rate before | after | FID before | after | steps | wall time (s) | MLflow run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for agent, extra in DEMO_AGENTS:
        c = with_overrides(cfg, [f"agent.name={agent}", *extra])
        res = run(c, progress, before=base)
        name = f"{cfg.method.name} + {agent} λ"
        rep.results[name] = res.after
        lams[agent] = res.lambdas
        for f, dst in (("after.png", f"{agent}_after.png"),):
            src = Path(res.model_dir).parent / f
            if src.exists():
                shutil.copy(src, rep.path / dst)
        lines.append(
            f"| {agent} | {base.forget_rate:.3f} | {res.after.forget_rate:.3f} | {base.fid:.3g} | "
            f"{res.after.fid:.3g} | {res.steps} | {res.wall_time:.1f} | `{res.run_id}` |"
        )
    plot_lambda(lams, rep.path / "lambda.png")
    lines += ["", "![λ trajectories](lambda.png)", ""]
    lines += [f"{a}: ![{a}]({a}_after.png)" for a, _ in DEMO_AGENTS]
    rep.sections.append("\n".join(lines) + "\n")


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def search_section(cfg: Config, rep: DemoReport, progress: ProgressFn) -> None:
    """A 4-trial Optuna search: static λ against the variational agent, Pareto front."""
    import shutil

    from unlearn.tuners.demo import demo_search

    n = cfg.eval.num_samples
    res = demo_search(cfg, progress)
    lines = [
        "## Search: static vs variational λ",
        "",
        f"{len(res.trials)} trials (Optuna, multi-objective: forget rate and FID, both "
        f"minimised) in {res.wall_time:.0f} s; sweep `{res.name}`, MLflow parent run "
        f"`{res.parent_run_id}`. Each trial is evaluated on {n} samples.",
        "",
        "| trial | agent | λ | β | forget rate | FID | Pareto | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    front = {t.trial_id for t in res.pareto}
    for t in res.trials:
        p = t.params
        lines.append(
            f"| {t.trial_id} | {p.get('agent.name', '-')} | {_fmt(p.get('method.lam'))} | "
            f"{_fmt(p.get('agent.options.beta'))} | {_fmt(t.forget_rate)} | {_fmt(t.fid)} | "
            f"{'yes' if t.trial_id in front else ''} | {t.status} |"
        )
    if res.pareto_plot and res.pareto_plot.exists():
        shutil.copy(res.pareto_plot, rep.path / "search_pareto.png")
        lines += ["", "![Pareto front](search_pareto.png)"]
    rep.sections.append("\n".join(lines) + "\n")


#: PPO iterations of the demo (each is a handful of tiny-env episodes)
DEMO_RL_ITERATIONS = 3


def tiny_config(cfg: Config) -> Config:
    """The packaged tiny env config, sharing the demo's workdir and MLflow store."""
    from unlearn.config import default_config_path, load_config

    path = default_config_path().parent / "tiny.yaml"
    return load_config(
        path,
        [
            f"workdir={cfg.workdir_path}",
            f"device={cfg.device}",
            f"tracking.uri={cfg.tracking.uri}",
            f"tracking.enabled={str(cfg.tracking.enabled).lower()}",
            f"tracking.experiment={cfg.tracking.experiment}-rl",
        ],
    )


def rl_section(cfg: Config, rep: DemoReport, progress: ProgressFn) -> None:
    """Smoke test: PPO on the tiny env, export the policy, unlearn with it."""
    from unlearn.config import with_overrides
    from unlearn.export.rllib import export_policy
    from unlearn.metrics.plots import plot_lambda
    from unlearn.pretrain import pretrain
    from unlearn.rl.train import train
    from unlearn.run import run

    tiny = tiny_config(cfg)
    pretrain(tiny, progress)
    tr = train(
        tiny,
        "ppo",
        iterations=DEMO_RL_ITERATIONS,
        env_runners=1,
        out=tiny.workdir_path / "rl" / "demo-ppo",
        progress=progress,
    )
    pdir = export_policy(tr.checkpoint, tiny.workdir_path / "policies" / "demo-ppo", "torchscript")
    budget = tiny.env.decisions * tiny.env.steps_per_decision
    c = with_overrides(tiny, ["agent.name=policy", f"unlearn.steps={budget}", f"agent.path={pdir}"])
    runs = {"policy": run(c, progress)}  # baselines beside a policy: the policy part
    rets = ", ".join(_fmt(r) for r in tr.returns)
    lines = [
        "## RL λ agent (tiny env, smoke test)",
        "",
        "A smoke test of the RL pipeline (train, export, unlearn with the exported policy) on "
        "the 8x8 tiny model, which barely generates its classes: its numbers show that the "
        "pipeline runs, not what a policy is worth (the section above does that on the demo "
        "model).",
        "",
        f"PPO for {len(tr.returns)} iterations on `unlearn/Unlearning-v0` ({tiny.data.name} "
        f"{tiny.data.resolution}x{tiny.data.resolution}, {tiny.env.decisions} decisions of "
        f"{tiny.env.steps_per_decision} steps); mean episode return per iteration: {rets}.",
        f"Checkpoint `{tr.checkpoint}`, exported policy `{pdir}` (TorchScript + metadata; "
        "loads without Ray).",
        "",
        f"Unlearning class {list(tiny.forget.classes)} of the tiny model with the exported policy:",
        "",
        "| agent | forget rate before | after | FID before | after | MLflow run |",
        "|---|---|---|---|---|---|",
    ]
    for agent, r in runs.items():
        b = r.before
        lines.append(
            f"| {agent} | {_fmt(b.forget_rate if b else None)} | {r.after.forget_rate:.3f} | "
            f"{_fmt(b.fid if b else None)} | {r.after.fid:.3g} | `{r.run_id}` |"
        )
        rep.results[f"tiny: {tiny.method.name} + {agent} λ"] = r.after
    plot_lambda({a: r.lambdas for a, r in runs.items()}, rep.path / "rl_lambda.png")
    lines += ["", "![λ of the policy](rl_lambda.png)"]
    rep.sections.append("\n".join(lines) + "\n")


def write_report(cfg: Config, rep: DemoReport) -> Path:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        f"# unlearn-lab report: {cfg.name}",
        "",
        f"Generated {now}.",
        "",
        "## Summary",
        "",
        markdown_table(rep.results),
        "",
        *rep.sections,
    ]
    path = rep.path / "report.md"
    path.write_text("\n".join(text) + "\n")
    (rep.path / "results.json").write_text(
        json.dumps({**{k: v.to_dict() for k, v in rep.results.items()}, **rep.extra}, indent=2)
    )
    return path
