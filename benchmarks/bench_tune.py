"""Ray Tune sweeps: concurrency speed-up and Ray/Tune overhead per trial.

Prints, measured in one run on one local Ray instance:
- wall time of 4 trials with ``max_concurrent=2`` / the same 4 trials one after another
  (the issue aims at <= 0.6x on a 2-core machine);
- per trial: wall time seen by the driver minus its unlearning time, and what remains of it
  without the trial's setup (imports, model, data) and final evaluation: Ray/Tune alone.

Trials run 1,200 tiny-model steps (about 12 s each here, the length of the demo's search
trials): a sweep also has a fixed cost (Tune start, searcher, report, about 2-4 s) that
dominates very short trials; with 300 steps (3 s trials) the ratio was 0.67-0.71x.

The 4 trials are the same fixed configurations in both runs (Optuna's points to evaluate)
on the tiny model (pretrained once into the benchmark workdir); MLflow is off so that only
Ray/Tune is measured.

Run: .venv/bin/python benchmarks/bench_tune.py   (about three minutes on 2 cores)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402

WORKDIR = "/tmp/unlearn-bench-tiny"
POINTS = [{"method.lam": lam} for lam in (0.2, 0.4, 0.6, 0.8)]
SPACE = {
    "fixed": {"method.name": "siss", "agent.name": "static"},
    "params": {"method.lam": {"float": [0.05, 0.95]}},
}


def _sweep(cfg, concurrent: int, tag: str, points: list[dict] = POINTS):
    from unlearn.tuners import SweepOptions, parse_space, run_sweep

    opts = SweepOptions(
        search="optuna",
        objective="weighted",
        num_samples=len(points),
        max_concurrent=concurrent,
        points_to_evaluate=points,
        name=f"bench-{tag}-{time.strftime('%H%M%S')}",
    )
    t0 = time.perf_counter()
    res = run_sweep(cfg, parse_space(SPACE, name="bench"), opts)
    return res, time.perf_counter() - t0


def main(steps: int = 1200, samples: int = 300) -> dict[str, float]:
    import ray

    from unlearn.config import load_config
    from unlearn.pretrain import pretrain
    from unlearn.tuners import init_ray

    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={WORKDIR}",
            f"unlearn.steps={steps}",
            f"eval.num_samples={samples}",
            "tune.cpus_per_trial=1",
            "tracking.enabled=false",
        ],
    )
    pretrain(cfg)  # cached after the first run
    init_ray(num_cpus=2)
    walls: dict[int, list[float]] = {1: [], 2: []}
    trials: dict[int, list] = {1: [], 2: []}
    try:
        _sweep(cfg, 1, "warmup", POINTS[:1])  # driver-side imports and Tune's first start
        # alternate the two settings: the machine's background load hits both alike
        for concurrent in (2, 1, 1, 2):
            res, wall = _sweep(cfg, concurrent, f"c{concurrent}")
            walls[concurrent].append(wall)
            trials[concurrent] += [t for t in res.trials if t.trial_time is not None]
    finally:
        ray.shutdown()
    everything = trials[1] + trials[2]

    def med(xs) -> float:
        return statistics.median(list(xs))

    out = {
        "concurrent_over_sequential": sum(walls[2]) / sum(walls[1]),
        "sweep_s_concurrent": med(walls[2]),
        "sweep_s_sequential": med(walls[1]),
        "unlearn_s_concurrent": med(t.unlearn_time for t in trials[2]),
        "unlearn_s_sequential": med(t.unlearn_time for t in trials[1]),
        "trial_wall_s": med(t.trial_time for t in everything),
        "trial_unlearn_s": med(t.unlearn_time for t in everything),
        "trial_overhead_s": med(t.overhead for t in everything),
        "trial_ray_tune_s": med(t.tune_overhead for t in everything),
    }
    out["overhead_fraction"] = out["trial_overhead_s"] / out["trial_wall_s"]
    # what a sweep costs beyond its trials, one after another (start, searcher, report)
    out["sweep_fixed_s"] = out["sweep_s_sequential"] - len(POINTS) * out["trial_wall_s"]
    print(
        f"4 trials, tiny model, {steps} steps, {samples} eval samples, 1 CPU per trial, "
        f"each setting run twice"
    )
    print(
        f"  sweep wall (median): max_concurrent=2 {out['sweep_s_concurrent']:.1f} s, one after "
        f"another {out['sweep_s_sequential']:.1f} s; ratio {out['concurrent_over_sequential']:.2f}x"
        f" (aim <= 0.6x)"
    )
    print(
        f"  unlearning time of one trial: {out['unlearn_s_concurrent']:.2f} s when two run at "
        f"once vs {out['unlearn_s_sequential']:.2f} s alone"
    )
    print(
        f"  per trial (median of {len(everything)}): wall {out['trial_wall_s']:.2f} s = "
        f"unlearning {out['trial_unlearn_s']:.2f} s + other {out['trial_overhead_s']:.2f} s "
        f"({out['overhead_fraction']:.0%}); of the other, Ray/Tune alone (no setup, no "
        f"evaluation) {out['trial_ray_tune_s']:.2f} s"
    )
    print(f"  fixed cost of a sweep beyond its trials: {out['sweep_fixed_s']:.1f} s")
    return out


if __name__ == "__main__":
    main()
