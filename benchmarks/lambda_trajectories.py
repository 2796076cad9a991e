"""λ trajectories of the variational agent per objective on the demo model.

For each ``agent.options.objective`` (and the old pathwise-only gradient of ``siss``) one
unlearning run of the demo config (forget 7, 200 SISS steps, ``unlearn.seed`` from the
command line) prints λ at steps 1, 25, 50, ..., the mean λ of the last 20 steps and the
fixed-noise proxies (retain, forget) at the end. A measurement, not a speed target.

Run: .venv/bin/python benchmarks/lambda_trajectories.py [steps] [seed] [variants]
     (variants: comma-separated of pathwise, siss, variance, utility; all by default)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config  # noqa: E402

VARIANTS = {
    "pathwise": "{objective: siss, estimator: pathwise}",
    "siss": "{objective: siss}",
    "variance": "{objective: variance}",
    "utility": "{objective: utility}",
}


def trajectory(variant: str, steps: int, seed: int) -> dict:
    from unlearn.task import make_unlearner

    cfg = demo_config(
        "tracking.enabled=false",
        f"unlearn.steps={steps}",
        f"unlearn.seed={seed}",
        "agent.name=variational",
        f"agent.options={VARIANTS[variant]}",
    )
    unl = make_unlearner(cfg).unlearner
    res = unl.run()
    lams = res.lambdas
    marks = [1, *range(25, steps + 1, 25)]
    pr, pf = unl.proxies()
    return {
        "variant": variant,
        "seed": seed,
        "lambda_at": {m: round(lams[m - 1], 3) for m in marks if m <= len(lams)},
        "mean_last20": round(sum(lams[-20:]) / len(lams[-20:]), 3),
        "proxy_retain": round(pr, 4),
        "proxy_forget": round(pf, 4),
        "wall_s": round(res.wall_time, 1),
    }


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    variants = sys.argv[3].split(",") if len(sys.argv) > 3 else list(VARIANTS)
    for v in variants:
        print(json.dumps(trajectory(v, steps, seed)), flush=True)


if __name__ == "__main__":
    main()
