"""Plots shared by several drivers: λ trajectories (run, tune, bench, rl, report) and the
forget-rate-vs-FID Pareto plot (tune, bench).

matplotlib is imported inside each function (Agg backend), so importing this module is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from unlearn.metrics.grid import save_figure


class ParetoPoint(Protocol):
    """What the Pareto plot reads from a trial (``unlearn.tuners.results.TrialResult``)."""

    params: dict[str, Any]
    evaluated: bool
    forget_rate: float
    fid: float


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lambda(series: dict[str, list[float]], path: Path) -> Path:
    """λ trajectories, one line per run or agent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, lams in series.items():
        ax.plot(range(1, len(lams) + 1), lams, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.set_ylim(-0.02, 1.02)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_pareto(
    trials: Sequence[ParetoPoint],
    front: Sequence[ParetoPoint],
    path: Path,
    group_key: str = "agent.name",
) -> Path:
    """Forget rate vs FID of every evaluated trial; the front is joined and highlighted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    groups: dict[str, list[ParetoPoint]] = {}
    for t in trials:
        if t.evaluated:
            groups.setdefault(str(t.params.get(group_key, "trial")), []).append(t)
    markers = "osD^vP*X"
    for i, (g, ts) in enumerate(sorted(groups.items())):
        ax.scatter(
            [t.forget_rate for t in ts],
            [t.fid for t in ts],
            marker=markers[i % 8],
            alpha=0.6,
            label=g,
        )
    if front:
        fr, fd = [t.forget_rate for t in front], [t.fid for t in front]
        ax.step(fr, fd, "r-", where="post", lw=1)
        ax.scatter(fr, fd, s=90, facecolors="none", edgecolors="r", label="Pareto front")
    ax.set_xlabel("forget rate (lower = more forgotten)")
    ax.set_ylabel("FID (lower = better quality)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
