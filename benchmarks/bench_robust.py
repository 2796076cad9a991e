"""Cost of robust erasure on the shipped demo pipeline (configs/t2i_demo.yaml).

Prints, measured in one run on the trained pipeline:
- UCE's run (the closed-form edit, one step) against a 100-step ESD run, both through the
  ``Unlearner`` with the same task (target: UCE >= 10x faster);
- the adversarial-prompt attack at its defaults (``audit.adversarial_*``) on the
  ESD-unlearned pipeline, as ``bench --audit`` and ``tune.objective`` run it (the search
  over the vocabulary plus the generation with the adversarial prompts), against the ESD
  run's wall time (target: attack <= 2x the run); and the post-attack concept rate.

Run: .venv/bin/python benchmarks/bench_robust.py   (a few minutes on 2 cores)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402

TARGETS = {"esd / uce": 10.0, "attack / esd run": 2.0}


def _unlearner(method: str):
    from unlearn.config import load_config
    from unlearn.task import make_unlearner

    cfg = load_config(
        REPO / "configs" / "t2i_demo.yaml",
        [
            "workdir=/tmp/unlearn-bench",
            "tracking.enabled=false",
            f"method.name={method}",
            "method.lam=0.9" if method == "uce" else "method.lam=0.3",
        ],
    )
    return make_unlearner(cfg).unlearner


def main() -> dict[str, float]:
    import torch

    from unlearn.audit import attacked_rates

    torch.manual_seed(0)
    uce = _unlearner("uce").run()
    unl = _unlearner("esd")
    esd = unl.run()
    t0 = time.perf_counter()
    rates = attacked_rates(unl, benign=False, relearn_attack=False, adversarial=True)
    attack = time.perf_counter() - t0
    out = {
        "uce_s": uce.wall_time,
        "esd_100_steps_s": esd.wall_time,
        "esd / uce": esd.wall_time / uce.wall_time,
        "attack_s": attack,
        "attack / esd run": attack / esd.wall_time,
        "post_attack_concept_rate": rates.adversarial_concept_rate,
    }
    print(f"device: {unl.device}, threads: {torch.get_num_threads()}")
    print(f"UCE edit (one step):     {uce.wall_time:8.2f} s")
    print(f"ESD, {esd.steps} steps:          {esd.wall_time:8.2f} s")
    print(f"ESD / UCE:               {out['esd / uce']:8.1f}x  (target >= {TARGETS['esd / uce']}x)")
    print(f"adversarial attack:      {attack:8.2f} s")
    ratio = out["attack / esd run"]
    print(f"attack / ESD run:        {ratio:8.2f}x  (target <= {TARGETS['attack / esd run']}x)")
    print(
        f"post-attack concept rate of the ESD-unlearned pipeline: {rates.adversarial_concept_rate}"
    )
    return out


if __name__ == "__main__":
    main()
