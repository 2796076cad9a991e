"""What a sweep returns and writes: trial rows, the Pareto front, tables, plots, schedules."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: how a trial ended (``early_stopped``: ASHA stopped it; ``error``: it raised)
TrialStatus = Literal["finished", "early_stopped", "diverged", "collapsed", "error"]


@dataclass(frozen=True)
class TrialResult:
    """One trial of a sweep (the numbers of its last report)."""

    trial_id: str
    params: dict[str, Any]
    status: TrialStatus
    forget_rate: float | None = None
    fid: float | None = None
    score: float | None = None
    #: after the relearning attack (``tune.objective=attacked_forget_rate`` only)
    attacked_forget_rate: float | None = None
    #: after the adversarial-prompt attack (``tune.objective=adversarial_concept_rate`` only)
    adversarial_concept_rate: float | None = None
    proxy_score: float | None = None
    steps: int = 0
    lambdas: list[float] = field(default_factory=list)
    unlearn_time: float = 0.0
    build_time: float = 0.0
    eval_time: float = 0.0
    trial_time: float | None = None
    run_id: str | None = None
    #: the Ray nodes the trial ran on, in order (more than one after a lost node)
    node_ids: list[str] = field(default_factory=list)
    #: times Tune restarted the trial from its last checkpoint (tune.max_failures)
    restarts: int = 0
    #: the family's other evaluation figures of the last report, by name without ``eval/``
    #: (a pipeline's ``paraphrase_concept_rate`` and ``retain_accuracy``, ...)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return _ok(self.forget_rate) and _ok(self.fid)

    @property
    def overhead(self) -> float | None:
        """Wall time of the trial (as the driver saw it) minus its unlearning time."""
        return None if self.trial_time is None else self.trial_time - self.unlearn_time

    @property
    def tune_overhead(self) -> float | None:
        """What remains without model / data build and evaluation: Ray and Tune alone."""
        o = self.overhead
        return None if o is None else o - self.build_time - self.eval_time


@dataclass
class SweepResult:
    """A finished (or resumed and finished) sweep.

    ``pareto`` holds the non-dominated trials in (forget term, FID), both minimised (the
    forget term: ``tune.objective``, the forget rate or the attacked forget rate);
    ``best`` the trial with the lowest ``tune/score`` among them (or overall for a weighted
    objective); ``artifacts`` maps names to files (``pareto_png``, ``best_config``,
    ``results_csv``, ``results_md``, and for PBT ``schedule`` and ``lambda_png``).
    """

    name: str
    path: Path
    search: str
    objective: str
    trials: list[TrialResult]
    pareto: list[TrialResult]
    best: TrialResult | None
    parent_run_id: str | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def pareto_plot(self) -> Path | None:
        return self.artifacts.get("pareto_png")

    @property
    def schedule(self) -> Path | None:
        return self.artifacts.get("schedule")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "search": self.search,
            "objective": self.objective,
            "wall_time": self.wall_time,
            "parent_run_id": self.parent_run_id,
            "trials": [asdict(t) for t in self.trials],
            "pareto": [t.trial_id for t in self.pareto],
            "best": None if self.best is None else self.best.trial_id,
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
        }


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def pareto_front(trials: list[TrialResult], forget: str = "forget_rate") -> list[TrialResult]:
    """Non-dominated evaluated trials (both objectives minimised), by the forget term
    ``forget`` (``forget_rate``, ``attacked_forget_rate`` or ``adversarial_concept_rate``)."""

    def f(t: TrialResult) -> float:
        return getattr(t, forget)

    pts = [t for t in trials if t.evaluated and _ok(f(t))]
    front = []
    for t in pts:
        dominated = any(
            f(o) <= f(t) and o.fid <= t.fid and (f(o) < f(t) or o.fid < t.fid) for o in pts
        )
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: (f(t), t.fid))


def pick_best(trials: list[TrialResult], pareto: list[TrialResult]) -> TrialResult | None:
    """Lowest ``tune/score`` on the front (all evaluated trials when the front is empty);
    without any evaluation, the lowest proxy score."""
    pool = [t for t in (pareto or trials) if _ok(t.score)]
    if pool:
        return min(pool, key=lambda t: t.score)
    pool = [t for t in trials if _ok(t.proxy_score)]
    return min(pool, key=lambda t: t.proxy_score) if pool else None


COLUMNS = (
    "trial",
    "status",
    "pareto",
    "eval/forget_rate",
    "eval/fid",
    "tune/score",
    "audit/attacked_forget_rate",
    "audit/adversarial_concept_rate",
    "tune/proxy_score",
    "steps",
    "unlearn_s",
    "trial_s",
)


def rows(trials: list[TrialResult], front: list[TrialResult]) -> tuple[list[str], list[list]]:
    """Table columns (searched params included) and rows, best score first."""
    keys = sorted({k for t in trials for k in t.params})
    extra = sorted({k for t in trials for k in t.metrics})
    on_front = {t.trial_id for t in front}
    cols = [*COLUMNS[:3], *keys, *COLUMNS[3:5], *(f"eval/{k}" for k in extra), *COLUMNS[5:]]
    ordered = sorted(trials, key=lambda t: (not _ok(t.score), t.score if _ok(t.score) else 0.0))
    out = []
    for t in ordered:
        out.append(
            [
                t.trial_id,
                t.status,
                t.trial_id in on_front,
                *[t.params.get(k, "") for k in keys],
                t.forget_rate,
                t.fid,
                *[t.metrics.get(k) for k in extra],
                t.score,
                t.attacked_forget_rate,
                t.adversarial_concept_rate,
                t.proxy_score,
                t.steps,
                round(t.unlearn_time, 3),
                None if t.trial_time is None else round(t.trial_time, 3),
            ]
        )
    return cols, out


def write_tables(
    trials: list[TrialResult], front: list[TrialResult], out: Path
) -> tuple[Path, Path]:
    cols, table = rows(trials, front)
    csv_path, md_path = out / "results.csv", out / "results.md"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(table)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in table]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def schedule_points(lambdas: list[float], budget: int | None = None) -> list[list[float]]:
    """Piecewise-constant λ per step as replayable ``[progress, λ]`` points.

    The unlearner asks for step ``t``'s λ (1-based) at progress ``(t-1)/T``. Each constant
    stretch becomes two points (its first and last step), so the schedule agent's linear
    interpolation returns exactly the recorded λ at every step; between two stretches it
    ramps over a progress no step asks for.
    """
    n = len(lambdas)
    total = budget or n
    if n == 0:
        return []
    pts: list[list[float]] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or lambdas[i] != lambdas[start]:
            last = 1.0 if i == n else (i - 1) / total
            pts += [[start / total, lambdas[start]], [last, lambdas[start]]]
            start = i
    return pts


def write_schedule(trial: TrialResult, path: Path, budget: int, **meta: Any) -> Path:
    """The winner's λ over time as a ``{"points": ...}`` file the schedule agent replays."""
    data = {
        "points": schedule_points(trial.lambdas, budget),
        "lambdas": trial.lambdas,
        "budget": budget,
        "trial": trial.trial_id,
        **meta,
    }
    path.write_text(json.dumps(data, indent=1))
    return path
