"""The fixed cost of ``unlearn bench --tune-baselines`` per trial (demo model).

A trial = one unlearning run + evaluation per train class. Its fixed cost is everything
else: Optuna's suggest / tell, building the agent, resetting the unlearner from memory. The
one-time cost per method (one unlearner per train class on data loaded once, shared by the
static and decay searches) is printed separately.
Measured in one run with short trials (``unlearn.steps=2``, 50 evaluation samples) so the
fixed part is visible; it does not grow with the run length.

Run: .venv/bin/python benchmarks/bench_tune_baselines.py   (a few minutes on 2 cores)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config  # noqa: E402


def main(trials: int = 4) -> dict[str, float]:
    import optuna

    from unlearn.bench.baselines import _suggest, _TrainRuns, decay_agent

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = demo_config(
        "tracking.enabled=false",
        "unlearn.steps=2",
        "eval.num_samples=50",
        "env.train_instances=[1,3]",
    )
    t0 = time.perf_counter()
    runs = _TrainRuns(cfg)
    setup = time.perf_counter() - t0
    inner = 0.0
    for unl in runs.units.values():  # time the runs and evaluations themselves
        for name in ("run", "evaluate"):
            fn = getattr(unl, name)

            def timed(*a, _fn=fn, **k):
                nonlocal inner
                s = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    inner += time.perf_counter() - s

            setattr(unl, name, timed)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))

    def objective(trial) -> float:
        p = _suggest(trial, "decay", runs.scaled)
        return runs.score(decay_agent(p["start"], p["end"]), p.get("scale"))

    study.optimize(objective, n_trials=1)  # warm-up
    inner = 0.0
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    total = (time.perf_counter() - t0) / trials
    fixed = total - inner / trials
    print(f"one-time setup per method ({len(runs.units)} train classes): {setup:.2f} s")
    print(f"trial: {total * 1e3:.0f} ms, of which runs + evaluations {inner / trials * 1e3:.0f} ms")
    print(f"fixed cost per trial: {fixed * 1e3:.1f} ms ({fixed / total:.3f} of this short trial)")
    return {"setup_s": setup, "trial_s": total, "fixed_s": fixed}


if __name__ == "__main__":
    main()
