"""The bench's optional Performance section: the repository's ``benchmarks/``, run in-process.

``benchmarks/`` is a folder of the source repository, not of the installed package: it is
imported only when it sits next to the package (an editable install or a checkout). Each
benchmark's ``main()`` returns its ratios; what it prints is captured for the report (the
library never prints).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearn.runtime import ProgressFn

log = logging.getLogger(__name__)

BENCHMARKS = ("bench_foundation", "bench_methods", "bench_env", "bench_tune")


@dataclass
class PerfResult:
    """Ratios per benchmark (or why they are missing) and the benchmarks' printed output."""

    available: bool
    reason: str = ""
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "ratios": self.ratios,
            "errors": self.errors,
            "seconds": self.seconds,
            "output": self.output,
        }


def repo_root() -> Path | None:
    """The source checkout holding ``benchmarks/`` next to the package, if there is one."""
    root = Path(__file__).resolve().parents[2]
    ok = (root / "benchmarks" / "common.py").is_file() and (root / "pyproject.toml").is_file()
    return root if ok else None


def run_perf(
    root: Path | None = None,
    names: tuple[str, ...] = BENCHMARKS,
    progress: ProgressFn | None = None,
) -> PerfResult:
    """Run each benchmark's ``main()``; a failing benchmark is reported, not raised."""
    from unlearn.runtime import no_progress

    progress = progress or no_progress
    root = repo_root() if root is None else root
    if root is None or not (root / "benchmarks" / "common.py").is_file():
        where = "the installed package" if root is None else str(root)
        return PerfResult(False, f"benchmarks/ is not available next to {where}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    res = PerfResult(True)
    buf = io.StringIO()
    for i, name in enumerate(names):
        progress("performance", i, len(names))
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            buf.write(f"== {name} ==\n")
            with contextlib.redirect_stdout(buf):
                out = mod.main()
            res.ratios[name] = {k: float(v) for k, v in (out or {}).items()}
        except Exception as e:  # a benchmark's failure is a result of the section, not fatal
            log.warning("benchmark %s failed: %s", name, e)
            res.errors[name] = f"{type(e).__name__}: {e}"
            buf.write(traceback.format_exc())
        res.seconds[name] = time.perf_counter() - t0
    progress("performance", len(names), len(names))
    res.output = buf.getvalue()
    return res


#: the ratios that matter, each with its target: (benchmark, key, what it compares, target)
HEADLINE: tuple[tuple[str, str, str, str], ...] = (
    ("bench_methods", "siss (loss form)", "SISS step (loss form) / naive-deletion step", "<= 1.15"),
    ("bench_methods", "siss (gradient form)", "SISS step (gradient form) / naive step", "<= 2.2"),
    ("bench_methods", "variational", "SISS + variational λ / SISS + static λ", "<= 1.25"),
    (
        "bench_methods",
        "siss (gradient form, norm_every=10) x floor",
        "SISS gradient form, `norm_every: 10` / bare forward + backward + AdamW step",
        "<= 1.15",
    ),
    ("bench_env", "K2_ratio", "env episode / direct unlearner steps, K = 2", "<= 1.05"),
    ("bench_env", "K5_ratio", "env episode / direct unlearner steps, K = 5", "<= 1.05"),
    ("bench_env", "K10_ratio", "env episode / direct unlearner steps, K = 10", "<= 1.05"),
    ("bench_tune", "concurrent_over_sequential", "4-trial sweep, 2 at once / one by one", "<= 0.6"),
)


def perf_markdown(perf: PerfResult) -> str:
    """The Performance section: the headline ratios beside their targets, raw output folded."""
    lines = ["## Performance", ""]
    if not perf.available:
        return "\n".join([*lines, f"Unavailable: {perf.reason}.", ""])
    lines += [
        "Measured in one run by the repository's `benchmarks/` (each file says what its ratios "
        "compare); every other figure is in the benchmark output below.",
        "",
        "| ratio | measured | target |",
        "|---|---|---|",
    ]
    for name, key, what, target in HEADLINE:
        v = perf.ratios.get(name, {}).get(key)
        if v is not None:
            lines.append(f"| {what} | {v:.4g} | {target} |")
    for name, err in perf.errors.items():
        lines.append(f"| {name} | failed: {err} | |")
    if perf.output:
        lines += [
            "",
            "<details><summary>benchmark output</summary>",
            "",
            "```",
            perf.output.rstrip(),
            "```",
            "",
            "</details>",
        ]
    return "\n".join([*lines, ""])
