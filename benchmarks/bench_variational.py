"""Per-step cost of the variational agent's λ-gradient estimators vs a static-λ step.

Prints, measured in one run on the demo model, data and batch size (SISS loss form,
gradient statistics off, steps timed alternately, median of repeats):
- variational, unbiased (score-function) estimator / static λ   (target <= 1.10x)
- variational, pathwise-only estimator / static λ               (the old gradient)
- variational, ``variance`` objective / static λ
- variational, ``utility`` objective / static λ (includes its proxy measurement every
  ``reward_every`` steps)

Run: .venv/bin/python benchmarks/bench_variational.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config, interleaved  # noqa: E402

AGENTS = {
    "static": ("static", "{}"),
    "variational (score)": ("variational", "{objective: siss}"),
    "variational (pathwise)": ("variational", "{objective: siss, estimator: pathwise}"),
    "variational (variance)": ("variational", "{objective: variance}"),
    "variational (utility)": ("variational", "{objective: utility}"),
}
TARGET = 1.10


def main(repeat: int = 5, number: int = 4) -> dict[str, float]:
    import torch

    from unlearn.config import with_overrides
    from unlearn.task import make_unlearner

    torch.manual_seed(0)
    cfg = demo_config("tracking.enabled=false")
    unls = {}
    for label, (name, options) in AGENTS.items():
        c = with_overrides(cfg, [f"agent.name={name}", f"agent.options={options}"])
        unl = make_unlearner(c).unlearner
        unl.grad_stats_every = 0  # each step's own cost
        unls[label] = unl
    times = interleaved({k: (lambda u=u: u.step(1)) for k, u in unls.items()}, repeat, number)
    static = times["static"]
    out = {k: t / static for k, t in times.items()}
    print(f"{'agent':26s} {'ms/step':>9s} {'x static':>9s}")
    for k, t in times.items():
        note = f"  target <= {TARGET}" if k == "variational (score)" else ""
        print(f"{k:26s} {t * 1e3:9.1f} {out[k]:9.3f}{note}")
    return out


if __name__ == "__main__":
    main()
