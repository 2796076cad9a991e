"""The demo and its markdown report."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from unlearn.config import Config
from unlearn.console import table
from unlearn.metrics import EvalResult
from unlearn.runtime import ProgressFn, no_progress

TABLE_KEYS = (
    "forget_rate",
    "fid",
    "coverage_kl",
    "confident",
    "proxy_retain",
    "proxy_forget",
    "nelbo_bpd",
)


def eval_table(results: dict[str, EvalResult], title: str = "evaluation") -> Table:
    rows = [[name, *[getattr(r, k) for k in TABLE_KEYS]] for name, r in results.items()]
    return table(title, ["run", *TABLE_KEYS], rows)


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


def run_demo(
    cfg: Config, out: Path | None = None, progress: ProgressFn = no_progress
) -> DemoReport:
    """Evaluate the (shipped or cached) base model and write a report folder."""
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
    base, samples = evaluate(model, clf, cfg, data)
    progress("evaluate base model", 1, 1)
    rep.results["base"] = base
    save_grid(samples[:100], out / "base_samples.png", nrow=10)
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
    if cfg.forget.classes:
        unlearn_section(cfg, rep, base, progress)
        write_report(cfg, rep)
    return rep


DEMO_AGENTS = (("static", []), ("variational", []))


def unlearn_section(cfg: Config, rep: DemoReport, base: EvalResult, progress: ProgressFn) -> None:
    """Forget the configured class with SISS under a static and a variational λ."""
    import shutil

    from unlearn.config import with_overrides
    from unlearn.experiment import plot_lambda, run

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
        json.dumps({k: v.to_dict() for k, v in rep.results.items()}, indent=2)
    )
    return path
