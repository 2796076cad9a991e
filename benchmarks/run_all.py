"""Run every benchmark and print its ratios (``make bench``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_env, bench_foundation, bench_methods, bench_tune  # noqa: E402

if __name__ == "__main__":
    print("== foundation: training-step overhead and DDIM sampling ==")
    bench_foundation.main()
    print("\n== methods: per-step cost vs naive deletion, variational overhead ==")
    bench_methods.main()
    print("\n== env: step overhead, exported policy latency, RLlib sampling ==")
    bench_env.main()
    print("\n== tune: parallel speed-up and per-trial overhead ==")
    bench_tune.main()
