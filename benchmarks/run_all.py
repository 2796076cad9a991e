"""Run every benchmark and print its ratios (``make bench``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_foundation  # noqa: E402

if __name__ == "__main__":
    print("== foundation: training-step overhead and DDIM sampling ==")
    bench_foundation.main()
