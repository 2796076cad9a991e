"""``unlearn bench``: which λ strategy should I use? Methods x λ agents on held-out instances.

``run_bench(cfg, BenchOptions(preset="cpu"))`` runs every (method, agent) cell on each
held-out class (``env.test_instances``) x seed as a real tracked unlearning run, and writes
``bench.md`` (mean ± 95% CI per cell, Welch's test against the best cell), ``results.json``
(every run's numbers), ``pareto.png``, ``lambda.png`` and sample grids; the folder is logged
to MLflow as the artifacts of the parent run ``bench-<preset>``.
"""

from __future__ import annotations

from unlearn.bench.cell import RunRecord, run_cell
from unlearn.bench.matrix import (
    AGENT_VARIANTS,
    METHOD_VARIANTS,
    PRESETS,
    BenchOptions,
    Cell,
    Plan,
    parse_names,
    parse_rows,
    plan,
    static_lam_from,
)
from unlearn.bench.perf import PerfResult, run_perf
from unlearn.bench.report import summary_rows
from unlearn.bench.runner import BenchResult, run_bench
from unlearn.bench.stats import CellSummary, Stat, mean_ci, summarize, welch_p

__all__ = [
    "AGENT_VARIANTS",
    "METHOD_VARIANTS",
    "PRESETS",
    "BenchOptions",
    "BenchResult",
    "Cell",
    "CellSummary",
    "PerfResult",
    "Plan",
    "RunRecord",
    "Stat",
    "mean_ci",
    "parse_names",
    "parse_rows",
    "plan",
    "run_bench",
    "run_cell",
    "run_perf",
    "static_lam_from",
    "summarize",
    "summary_rows",
    "welch_p",
]
