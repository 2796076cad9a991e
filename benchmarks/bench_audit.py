"""Cost of ``unlearn audit`` at its defaults vs the unlearning run it audits (demo model).

Prints, measured in one run: the wall time of one demo unlearning run (``configs/demo.yaml``:
SISS, 200 steps, the loop alone, as ``UnlearnResult.wall_time``), the wall time of an audit
of its output at the ``audit`` defaults (two relearning attacks on the base and on the
unlearned model with their forget-rate checkpoints, and membership inference on both),
and their ratio (target <= 2x), with the audit's parts.

Run: .venv/bin/python benchmarks/bench_audit.py   (a few minutes on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config  # noqa: E402

TARGET = 2.0


def main() -> dict[str, float]:
    import torch

    from unlearn.audit import run_audit
    from unlearn.run import run

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo_config("tracking.enabled=false", f"workdir={tmp}")
        res = run(cfg, evaluate=False)
        parts: dict[str, float] = {}
        last = [time.perf_counter()]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            parts[stage] = parts.get(stage, 0.0) + now - last[0]
            last[0] = now

        last[0] = time.perf_counter()
        t0 = time.perf_counter()
        audit = run_audit(cfg, Path(res.model_dir), progress=progress)
        wall = time.perf_counter() - t0
    ratio = wall / res.wall_time
    a = cfg.audit
    print(f"unlearning run: {res.steps} steps in {res.wall_time:.1f} s")
    print(
        f"audit: {wall:.1f} s (report {audit.wall_time:.1f} s after loading); "
        f"{a.relearn_steps} attack steps x 4, {a.num_samples} samples per checkpoint, "
        f"{a.mia_samples} x {a.mia_noise} membership losses per side"
    )
    for stage, s in parts.items():  # relearning includes the before-attack rates
        print(f"  {stage:<24} {s:6.1f} s")
    print(f"audit / unlearning: {ratio:.2f}x  (target <= {TARGET}x)")
    return {"unlearn_s": res.wall_time, "audit_s": wall, "ratio": ratio}


if __name__ == "__main__":
    main()
