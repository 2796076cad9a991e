"""Per-cell statistics of the bench: mean, 95% t confidence interval, Welch's test vs the best.

The runs of one (method, agent) cell are its instances x seeds. Every metric is "lower is
better" except those with a target (the MIA AUC: 0.5, chance; t2i retain accuracy: 1),
where closer is better; the
best cell of a metric has the lowest mean (or the mean nearest the target), and every other
cell is compared with it by Welch's unequal-variance t-test (two-sided, α = 0.05): *distinguishable* means
the difference from the best is significant, *not distinguishable* means the data cannot
tell the two apart (a tie at this number of runs).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: metric -> (label, unit / note); all are minimised
METRICS: dict[str, str] = {
    "forget_rate": "forget rate",
    "fid": "FID",
    "coverage_kl": "coverage KL",
    "steps_to_forget": "steps to forget",
    "wall_time": "wall time (s)",
}
#: titles of ``bench --audit``'s columns (:mod:`unlearn.audit.attacked`); each family's
#: ``audit_columns`` says which apply to it
AUDIT_METRICS: dict[str, str] = {
    "attacked_forget_rate": "attacked forget rate",
    "benign_forget_rate": "forget rate after benign fine-tuning",
    "mia_auc": "MIA AUC",
    "adversarial_concept_rate": "post-attack concept rate (adversarial prompts)",
}
#: metrics whose best value is a target rather than the minimum
TARGETS: dict[str, float] = {"mia_auc": 0.5, "retain_accuracy": 1.0}
ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Stat:
    """Mean and the half width of its confidence interval (NaN when undefined: n < 2)."""

    n: int
    mean: float
    std: float
    ci: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": _json(self.mean),
            "std": _json(self.std),
            "ci": _json(self.ci),
            "low": _json(self.mean - self.ci),
            "high": _json(self.mean + self.ci),
        }


def _json(v: float) -> float | None:
    return v if math.isfinite(v) else None


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Stat:
    """Mean ± t_{(1+level)/2, n-1} · s / √n with the sample standard deviation s."""
    from scipy import stats

    xs = [float(v) for v in values if math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Stat(0, math.nan, math.nan, math.nan)
    mean = statistics.fmean(xs)
    if n == 1:
        return Stat(1, mean, math.nan, math.nan)
    s = statistics.stdev(xs)
    return Stat(n, mean, s, float(stats.t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None with fewer than two values on a side.

    Two constant samples have no variance to test with: equal means give p = 1, different
    means p = 0 (scipy would return NaN).
    """
    from scipy import stats

    a = [float(v) for v in a if math.isfinite(v)]
    b = [float(v) for v in b if math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


@dataclass
class CellSummary:
    """One (method, agent) cell over its runs.

    ``best[m]``: this cell has the lowest mean of metric ``m`` (ties: every one of them);
    ``p[m]``: Welch p-value against the best cell (the first in table order) (None for the best itself or when undecidable);
    ``distinguishable[m]``: p < 0.05 (None when undecidable).
    """

    method: str
    agent: str
    runs: int = 0
    finished: int = 0
    diverged: int = 0
    errors: int = 0
    #: runs the quality guard flagged (their numbers count, as the guard returned them)
    collapsed: int = 0
    reached: int = 0
    values: dict[str, list[float]] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    best: dict[str, bool] = field(default_factory=dict)
    p: dict[str, float | None] = field(default_factory=dict)
    distinguishable: dict[str, bool | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "agent": self.agent,
            "runs": self.runs,
            "finished": self.finished,
            "diverged": self.diverged,
            "errors": self.errors,
            "collapsed": self.collapsed,
            "reached": self.reached,
            "metrics": {
                m: {
                    **self.stats[m].to_dict(),
                    "best": self.best[m],
                    "p_vs_best": self.p[m],
                    "distinguishable": self.distinguishable[m],
                }
                for m in self.stats
            },
        }


def _gap(metric: str, mean: float) -> float:
    """How far a mean is from the best possible: itself, or its distance to the target."""
    return abs(mean - TARGETS[metric]) if metric in TARGETS else mean


def summarize(
    records: Sequence[Any],
    groups: Sequence[tuple[str, str]],
    metrics: Sequence[str] = tuple(METRICS),
) -> list[CellSummary]:
    """Summaries of ``groups`` ((method, agent) in table order) from run records.

    A record needs ``method``, ``agent``, ``status`` and ``value(metric)``; runs that raised
    an error carry no numbers, diverged runs count with the numbers of their last good weights,
    collapsed runs with those of the weights the quality guard returned.
    ``metrics``: which ones (the bench's, plus the family's ``columns`` and ``AUDIT_METRICS``
    with ``--audit``).
    """
    cells = {g: CellSummary(*g) for g in groups}
    for r in records:
        c = cells.get((r.method, r.agent))
        if c is None:
            continue
        c.runs += 1
        c.finished += r.status == "finished"
        c.diverged += r.status == "diverged"
        c.collapsed += r.status == "collapsed"
        c.errors += r.status == "error"
        c.reached += r.steps_to_forget is not None
        for m in metrics:
            c.values.setdefault(m, []).append(r.value(m))
    for c in cells.values():
        for m in metrics:
            c.values.setdefault(m, [])
            c.stats[m] = mean_ci(c.values[m])
    for m in metrics:
        ranked = [c for c in cells.values() if c.stats[m].n > 0]
        best = min(ranked, key=lambda c: _gap(m, c.stats[m].mean), default=None)
        for c in cells.values():
            # cells tied on the best mean are all "best"; the first is the reference
            c.best[m] = (
                best is not None
                and c.stats[m].n > 0
                and _gap(m, c.stats[m].mean) == _gap(m, best.stats[m].mean)
            )
            if best is None or c is best or c.stats[m].n == 0:
                c.p[m], c.distinguishable[m] = None, False if c is best else None
                continue
            p = welch_p(c.values[m], best.values[m])
            c.p[m] = p
            c.distinguishable[m] = None if p is None else p < ALPHA
    return list(cells.values())
