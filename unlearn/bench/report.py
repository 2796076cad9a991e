"""The bench report: summary table (markdown and terminal), plots, bench.md, results section."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unlearn.bench.cell import RunRecord
from unlearn.bench.stats import CellSummary, Stat
from unlearn.config import ConfigError

START, END = "<!-- results:start -->", "<!-- results:end -->"
SHORT = {
    "forget_rate": "forget",
    "fid": "FID",
    "coverage_kl": "coverage",
    "steps_to_forget": "steps",
    "wall_time": "wall",
    "attacked_forget_rate": "attacked",
    "benign_forget_rate": "benign",
    "mia_auc": "MIA",
    "paraphrase_rate": "paraphrase",
    "retain_accuracy": "retain",
    "adversarial_concept_rate": "adversarial",
}
#: column titles of the t2i metrics (markdown, terminal)
T2I_COLS = {
    "paraphrase_rate": ("paraphrase concept rate", "paraphrase"),
    "retain_accuracy": ("retain accuracy (1 = best)", "retain acc"),
}
#: column titles of the audit metrics (markdown, terminal)
AUDIT_COLS = {
    "attacked_forget_rate": ("attacked forget rate", "attacked"),
    "benign_forget_rate": ("forget rate after benign fine-tuning", "benign"),
    "mia_auc": ("MIA AUC (0.5 = chance)", "MIA AUC"),
    "adversarial_concept_rate": ("post-attack concept rate (adversarial prompts)", "adv. ASR"),
}
DIST = "distinguishable from best (p<0.05)"


def _num(v: float, digits: int = 4) -> str:
    """``digits`` significant digits, but never exponent notation for large numbers."""
    if not math.isfinite(v):
        return "nan"
    return f"{v:.0f}" if abs(v) >= 10**digits else format(v, f".{digits}g")


def stat_text(s: Stat) -> str:
    if s.n == 0:
        return "-"
    return _num(s.mean) + ("" if not math.isfinite(s.ci) else f" ± {_num(s.ci, 2)}")


def summary_rows(
    summaries: Sequence[CellSummary],
    threshold: float,
    mark: Callable[[str], str] = str,
    short: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Columns and text rows of the summary; ``mark`` decorates the best value of a metric,
    ``short`` gives terse column names (terminal). The t2i columns (paraphrase concept rate,
    retain accuracy) and then the audit columns (``bench --audit``) follow the wall time when
    the summaries hold them."""
    metrics = list(summaries[0].stats) if summaries else []
    pct = f"{threshold * 100:g}%"
    names = {
        "forget_rate": ("forget rate", "forget"),
        "fid": ("FID", "FID"),
        "coverage_kl": ("coverage KL", "coverage"),
        "steps_to_forget": (f"steps to forget < {pct}", f"steps<{pct}"),
        "wall_time": ("wall time (s)", "wall s"),
        **T2I_COLS,
        **AUDIT_COLS,
    }
    # one column per metric the summaries hold, in their order (t2i has no coverage KL)
    cols = [
        *(("method", "agent", "n", "div") if short else ("method", "agent", "runs", "diverged")),
        *(names[m][1 if short else 0] for m in metrics),
        "≠ best (p<.05)" if short else DIST,
    ]
    rows = []
    for c in summaries:
        cells = []
        for m in metrics:
            text = stat_text(c.stats[m])
            if m == "steps_to_forget":
                text = "not reached" if c.reached == 0 else text
                text += f" ({c.reached}/{c.runs})"
            cells.append(mark(text) if c.best[m] else text)
        differs = [SHORT[m] for m in metrics if c.distinguishable[m]]
        unknown = [SHORT[m] for m in metrics if c.distinguishable[m] is None and not c.best[m]]
        dist = ", ".join(differs) or "none"
        if unknown:
            dist += f" (undecidable: {', '.join(unknown)})"
        div = str(c.diverged) + (f" (+{c.errors} errors)" if c.errors else "")
        div += f", {c.collapsed} collapsed" if c.collapsed else ""
        rows.append([c.method, c.agent, str(c.runs), div, *cells, dist])
    return cols, rows


def markdown_table(cols: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


LEGEND = (
    "Mean ± half width of the 95% confidence interval (t-distribution) over instances x seeds; "
    "lower is better everywhere; **bold** = best cell of a metric. The last column lists the "
    "metrics on which the cell differs from the best cell by Welch's t-test (p < 0.05); on the "
    "others it is statistically tied with the best at this number of runs. Diverged runs are "
    "kept, with the metrics of their last good weights; runs that raised an error have none. "
    "Steps to forget: first checked step (0 = the base model) with the forget rate below the "
    "threshold, over the runs that reached it (reached / runs)."
)
AUDIT_LEGEND = (
    "Audit columns (`--audit`): the forget rate after a relearning attack on k forget samples "
    "(attacked) and after as many steps of fine-tuning on retain data only (benign), and the "
    "AUC of a loss-based membership attack telling forget samples from held-out ones; its best "
    "cell is the one nearest 0.5 (chance)."
)
T2I_AUDIT_LEGEND = (
    "On a pipeline the audit's rates are concept rates, with no MIA column, and a post-attack "
    "concept rate: that of the forget prompts with words from the vocabulary appended by the "
    "adversarial-prompt attack (the attack's success rate)."
)


T2I_LEGEND = (
    "On t2i the forget rate is the concept rate of the erased prompts; the paraphrase concept "
    "rate is that of held-out paraphrases (lower is better) and the retain accuracy the "
    "fraction of retain-prompt images showing what their prompt asks for (best: nearest 1)."
)


def legend_text(t2i: bool, audit: bool) -> str:
    """The summary's legend, with the t2i and audit paragraphs where they apply."""
    audit_legend = [AUDIT_LEGEND, *([T2I_AUDIT_LEGEND] if t2i else [])] if audit else []
    return " ".join([LEGEND, *([T2I_LEGEND] if t2i else []), *audit_legend])


def instances_text(instances: Sequence[int | str]) -> str:
    """``class [2, 8]``, or ``the memorised outlier`` for the memorisation bench."""
    from unlearn.bench.matrix import OUTLIER

    if list(instances) == [OUTLIER]:
        return "the memorised outlier"
    if all(isinstance(c, int) for c in instances):
        return f"class {list(instances)}"
    return "instances [" + ", ".join(map(str, instances)) + "]"  # named ones among them


def plot_pareto_runs(records: Sequence[RunRecord], path: Path) -> tuple[Path, list[RunRecord]]:
    """Forget rate vs FID of every run; the non-dominated runs are joined and circled."""
    from unlearn.metrics.plots import plot_pareto
    from unlearn.tuners.results import TrialResult, pareto_front

    many = len({(r.method, r.agent) for r in records}) > 8
    ok = [r for r in records if math.isfinite(r.forget_rate) and math.isfinite(r.fid)]
    trials = [
        TrialResult(
            r.key,
            {"cell": r.agent if many else f"{r.method} + {r.agent}"},
            r.status,
            r.forget_rate,
            r.fid,
        )
        for r in ok
    ]
    front = pareto_front(trials)
    by_key = {r.key: r for r in records}
    return plot_pareto(trials, front, path, group_key="cell"), [by_key[t.trial_id] for t in front]


def mean_lambdas(records: Sequence[RunRecord]) -> dict[str, list[float]]:
    """Per agent, the step-wise mean λ over its runs (shorter diverged runs drop out)."""
    out: dict[str, list[float]] = {}
    for agent in dict.fromkeys(r.agent for r in records):
        runs = [r.lambdas for r in records if r.agent == agent and r.lambdas]
        if runs:
            n = max(len(x) for x in runs)
            out[f"{agent} (mean of {len(runs)})"] = [
                statistics.fmean(x[i] for x in runs if len(x) > i) for i in range(n)
            ]
    return out


def plot_lambdas(records: Sequence[RunRecord], path: Path) -> Path:
    from unlearn.metrics.plots import plot_lambda

    return plot_lambda(mean_lambdas(records), path)


def matrix_line(p: dict[str, Any], facts: dict[str, Any]) -> str:
    """The report's one-line description of what ran: the rows (methods x agents, or the
    ``--rows`` pairs), instances, seeds, outcomes, and where the static λ came from."""
    rows = p.get("rows")
    what = (
        f"{len(rows)} (method, agent) rows"
        if rows
        else f"{len(p['methods'])} methods x {len(p['agents'])} λ agents"
    )
    tuning = p.get("tuning") or {}
    tuned = [m for m in p["methods"] if f"{m}|static" in tuning]
    static = f"Static λ = {p['static_lam']:g} ({p['static_source']})"
    # the quality guard's count, where a bench ran with it (older records have none)
    collapsed = f"{facts['collapsed']} collapsed, " if facts.get("collapsed") else ""
    if tuned:
        static += f", except the tuned static rows ({', '.join(tuned)}: see Compute of each row)"
    src = p.get("swept_source") or {}
    if src:
        shown = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (p.get("swept") or {}).items()
        )
        static += (
            f"; the swept rows run sweep {src['sweep']}'s best trial ({src['trial']}, objective "
            f"{src['objective']}): {shown}"
        )
    return (
        f"Matrix: {what} x held-out instances (forgotten) {instances_text(p['instances'])} x "
        f"seeds {p['seeds']} = {facts['runs']} runs ({facts['finished']} finished, "
        f"{facts['diverged']} diverged, {collapsed}{facts['errors']} errors). {static}."
    )


def bench_markdown(
    facts: dict[str, Any],
    summary: str,
    front: Sequence[RunRecord],
    records: Sequence[RunRecord],
    grids: Sequence[str],
    perf: str = "",
) -> str:
    """The whole bench.md."""
    p = facts["plan"]
    lines = [
        f"# unlearn bench: {facts['preset']}",
        "",
        f"Generated {facts['date']} on `{facts['device']}`. Config `{facts['config']}`: "
        f"{facts['model']} on {facts['data']}, {facts['steps']} unlearning steps, forget rate "
        f"checked every {facts['eval_every'] or facts['steps']} steps on "
        f"{facts['samples']}.",
        "",
        matrix_line(p, facts),
        "",
    ]
    if p["skipped"]:
        lines += ["Left out:", ""] + [f"- `{k}`: {v}" for k, v in p["skipped"].items()] + [""]
    legend = legend_text(facts.get("t2i", False), facts.get("audit", False))
    lines += ["## Summary", "", summary, "", legend, ""]
    lines += [
        "## Pareto front: forget rate vs FID (all runs)",
        "",
        "![Pareto front](pareto.png)",
        "",
        "| method | agent | instance | seed | forget rate | FID |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.method} | {r.agent} | {r.instance} | {r.seed} | {_num(r.forget_rate)} | "
        f"{_num(r.fid)} |"
        for r in front
    ]
    lines += ["", "## λ trajectories", "", "![λ per agent](lambda.png)", ""]
    if grids:
        first = instances_text(p["instances"][:1])
        lines += [f"## Samples ({first} forgotten, seed {p['seeds'][0]})", ""]
        lines += [f"{Path(g).stem}: ![{Path(g).stem}]({g})  " for g in grids] + [""]
    bad = [r for r in records if r.status != "finished"]
    if bad:
        lines += ["## Runs that did not finish", "", "| run | status | message |", "|---|---|---|"]
        lines += [f"| {r.key} | {r.status} | {r.message.replace('|', '/')} |" for r in bad] + [""]
    if perf:
        lines.append(perf)
    return "\n".join(lines) + "\n"


def check_publish(path: str | Path) -> Path:
    """``--publish``: a ``.json`` file in a folder that exists (``benchmarks/results/NAME.json``)."""
    p = Path(path).expanduser()
    if p.suffix != ".json" or not p.parent.is_dir():
        raise ConfigError(
            f"--publish: {str(p)!r} must be a .json file in an existing folder "
            "(benchmarks/results/NAME.json)"
        )
    return p
