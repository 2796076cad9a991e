"""The image-to-image results table: for each demo model (inpainter, masked autoencoder) and
task (inpaint, outpaint), the original model, encoder-level unlearning with the real and with
the proxy retain set, and the four baselines, on held-out classes x seeds; forget and retain
completions scored separately (classifier accuracy, FID, embedding cosine).

Every run appends one JSON line to ``OUT/runs.jsonl`` (a rerun skips the runs already there);
``OUT/table.md`` is the table of means with 95% t intervals over classes x seeds.

Run: .venv/bin/python benchmarks/i2i_table.py OUT [--classes 2,8] [--seeds 3] [--steps 60]
     [--kinds inpaint_ddpm,mae] [--tasks inpaint,outpaint] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402

CONFIGS = {"inpaint_ddpm": "i2i_demo.yaml", "mae": "i2i_mae.yaml"}
TASKS = {"inpaint": 0.25, "outpaint": 0.5}
#: row -> (method, retain source)
ROWS = {
    "original": (None, "retain"),
    "i2i_encoder (real retain)": ("i2i_encoder", "retain"),
    "i2i_encoder (proxy retain: digits)": ("i2i_encoder", "digits"),
    "i2i_max_loss": ("i2i_max_loss", "retain"),
    "i2i_noisy_label": ("i2i_noisy_label", "retain"),
    "i2i_retain_label": ("i2i_retain_label", "retain"),
    "i2i_random_encoder": ("i2i_random_encoder", "retain"),
}
METRICS = ("forget_rate", "retain_accuracy", "forget_fid", "fid", "forget_cosine", "retain_cosine")
TITLES = (
    "forget acc.",
    "retain acc.",
    "forget FID",
    "retain FID",
    "forget cos.",
    "retain cos.",
)
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def _ci(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan
    return m, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def run_one(kind: str, task: str, row: str, c: int, seed: int, args) -> dict:
    from unlearn.config import load_config
    from unlearn.task import make_unlearner

    method, source = ROWS[row]
    cfg = load_config(
        REPO / "configs" / CONFIGS[kind],
        [
            f"workdir={args.workdir}",
            "tracking.enabled=false",
            "device=cpu",
            f"i2i.task={task}",
            f"i2i.mask_ratio={TASKS[task]}",
            f"i2i.eval_images={args.images}",
            f"forget.classes=[{c}]",
            f"forget.retain_source={source}",
            f"method.name={method or 'i2i_encoder'}",
            f"unlearn.steps={args.steps}",
            f"unlearn.seed={seed}",
        ],
    )
    t0 = time.perf_counter()
    setup = make_unlearner(cfg)
    if method is not None:
        setup.unlearner.run()
    result = setup.unlearner.evaluate().result
    return {
        "kind": kind,
        "task": task,
        "row": row,
        "class": c,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        **{k: getattr(result, k) for k in METRICS},
    }


def table(runs: list[dict]) -> str:
    lines = []
    for kind in CONFIGS:
        for task in TASKS:
            sel = [r for r in runs if r["kind"] == kind and r["task"] == task]
            if not sel:
                continue
            lines += [
                f"### {kind}, {task} (hidden fraction {TASKS[task]})",
                "",
                "| row | n | " + " | ".join(TITLES) + " |",
                "|---|---|" + "---|" * len(TITLES),
            ]
            for row in ROWS:
                rs = [r for r in sel if r["row"] == row]
                if not rs:
                    continue
                cells = []
                for k in METRICS:
                    m, h = _ci([r[k] for r in rs])
                    cells.append(f"{m:.3g}" if math.isnan(h) else f"{m:.3g} ± {h:.2g}")
                lines.append(f"| {row} | {len(rs)} | " + " | ".join(cells) + " |")
            lines.append("")
            base = {r["class"]: r for r in sel if r["row"] == "original"}
            rows = [row for row in ROWS if row != "original" and any(r["row"] == row for r in sel)]
            if not base or not rows:
                continue
            lines += [
                "Change from the original on the same class (run − original; *: the 95% "
                "interval excludes 0):",
                "",
                "| row | n | " + " | ".join(TITLES) + " |",
                "|---|---|" + "---|" * len(TITLES),
            ]
            for row in rows:
                rs = [r for r in sel if r["row"] == row and r["class"] in base]
                cells = []
                for k in METRICS:
                    m, h = _ci([r[k] - base[r["class"]][k] for r in rs])
                    star = "*" if not math.isnan(h) and abs(m) > h else ""
                    cells.append(f"{m:+.3g} ± {h:.2g}{star}")
                lines.append(f"| {row} | {len(rs)} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--classes", default="2,8")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--workdir", default="runs")
    p.add_argument("--kinds", default=",".join(CONFIGS))
    p.add_argument("--tasks", default=",".join(TASKS))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    runs = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    done = {(r["kind"], r["task"], r["row"], r["class"], r["seed"]) for r in runs}
    classes = [int(c) for c in args.classes.split(",")]
    for kind in args.kinds.split(","):
        for task in args.tasks.split(","):
            for row, (method, _) in ROWS.items():
                seeds = [0] if method is None else list(range(args.seeds))
                for c in classes:
                    for s in seeds:
                        if (kind, task, row, c, s) in done:
                            continue
                        r = run_one(kind, task, row, c, s, args)
                        runs.append(r)
                        with log.open("a") as f:
                            f.write(json.dumps(r) + "\n")
                        print(json.dumps(r), flush=True)
                        (args.out / "table.md").write_text(table(runs))
    (args.out / "table.md").write_text(table(runs))


if __name__ == "__main__":
    main()
