"""The CUDA path, checked and measured on one GPU (run by ``benchmarks/gpu_check.sh``, which
installs the project first; under 8 minutes on an H100-class GPU, no network):

1. the unlearning loop under bfloat16 autocast on the shipped demo pipeline (LoRA ESD
   steps; the weights stay float32, the losses finite);
2. at Stable Diffusion 1.5's size (``unlearn.models.t2i.sd15``, random weights, 512 px):
   ESD steps with LoRA rank 8 against a bare forward + backward + AdamW step of the same
   LoRA UNet on the same rows (both under the loop's bfloat16 autocast), and the peak GPU
   memory of each;
3. sampling throughput with guidance against the UNet's own forwards at that size;
4. the same at SDXL base 1.0's size (``unlearn.models.sdxl.published``, random weights,
   1024 px: both text encoders, the pooled and time-id added conditioning);
5. a 4-trial Ray Tune sweep on the demo pipeline with ``tune.gpus_per_trial=0.25`` (four
   trials share the GPU).

Prints each figure and the ratios; exits non-zero when a check fails, and with one line when
there is no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _no_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA GPU visible to torch {torch.__version__} "
            f"(torch.cuda.is_available() is false); run it on a machine with one",
            file=sys.stderr,
        )
        sys.exit(3)


def autocast_loop(work: Path) -> dict:
    import torch

    from unlearn.config import load_config
    from unlearn.task import make_unlearner

    cfg = load_config(
        REPO / "configs" / "t2i_demo.yaml",
        [f"workdir={work}", "device=cuda", "tracking.enabled=false", "model.train=lora"],
    )
    unl = make_unlearner(cfg).unlearner
    assert unl.scaler_dtype == torch.bfloat16, "the loop does not run under bfloat16 autocast"
    unl.step(2)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    stats = unl.step(10)
    torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / 10
    assert all(torch.isfinite(torch.tensor(s.forget_loss)) for s in stats), "non-finite loss"
    dtypes = {p.dtype for p in unl.model.trainable_parameters()}
    assert dtypes == {torch.float32}, f"trained weights are {dtypes}, not float32"
    return {"step_s": sec, "last_forget_loss": stats[-1].forget_loss}


def sd_scale(family: str = "sd15", side: int = 64) -> dict:
    import torch

    from benchmarks.bench_sd_scale import phase

    out = {}
    for name in ("bare", "esd_lora", "sample"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        out[name] = phase(name, "cuda", 5, 1.0, family, side)
        torch.cuda.synchronize()
        out[name]["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def tune_sweep(work: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "unlearn.cli",
        "tune",
        "--config",
        str(REPO / "configs" / "t2i_demo.yaml"),
        "--space",
        str(REPO / "configs" / "tune" / "t2i_esd.yaml"),
        "--num-samples",
        "4",
        "--max-concurrent",
        "4",
        "--json",
    ]
    for s in (
        f"workdir={work}",
        "device=cuda",
        "tune.gpus_per_trial=0.25",
        "tune.cpus_per_trial=1",
        "unlearn.steps=20",
        "t2i.samples_per_prompt=8",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
    ):
        cmd += ["--set", s]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    sec = time.perf_counter() - t0
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"the tune sweep failed (exit {r.returncode}): {tail}")
    trials = json.loads(r.stdout)["trials"]
    assert len(trials) == 4, f"the sweep ran {len(trials)} trials, not 4"
    return {"s": sec, "trials": len(trials), "wall_s": sec}


def main() -> int:
    _no_gpu()
    import torch

    from unlearn.runtime import set_threads

    set_threads()
    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="unlearn-gpu-check-") as tmp:
        work = Path(tmp)
        checks = (
            ("autocast loop", lambda: autocast_loop(work / "loop")),
            ("SD-1.5 size", sd_scale),
            ("SDXL size", lambda: sd_scale("sdxl", 128)),
            ("tune sweep", lambda: tune_sweep(work / "tune")),
        )
        results = {}
        for name, fn in checks:
            t0 = time.perf_counter()
            try:
                results[name] = fn()
                print(f"[ok] {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
            except Exception as e:  # a failed check is reported; the others still run
                failed.append(name)
                print(f"[FAILED] {name}: {type(e).__name__}: {e}", flush=True)
    loop = results.get("autocast loop")
    if loop:
        print(
            f"bfloat16 autocast loop (demo pipeline, LoRA ESD): {loop['step_s'] * 1e3:.1f} ms "
            f"per step, forget loss {loop['last_forget_loss']:.4f}"
        )
    for size, px in (("SD-1.5 size", 512), ("SDXL size", 1024)):
        sd = results.get(size)
        if not sd:
            continue
        b, e, s = sd["bare"], sd["esd_lora"], sd["sample"]
        print(
            f"{size}, {px} px: ESD step LoRA rank 8 {e['s'] * 1e3:.0f} ms (peak "
            f"{e['peak_gpu_gib']:.1f} GiB) vs bare LoRA UNet fwd+bwd+AdamW {b['s'] * 1e3:.0f} ms "
            f"(peak {b['peak_gpu_gib']:.1f} GiB): {e['s'] / b['s']:.2f}x"
        )
        print(
            f"sampling with guidance: {s['s'] * 1e3:.0f} ms per step vs its UNet forward "
            f"{s['unet_forward_s'] * 1e3:.0f} ms: {s['unet_forward_s'] / s['s']:.2f}x "
            f"(peak {s['peak_gpu_gib']:.1f} GiB)"
        )
    sweep = results.get("tune sweep")
    if sweep:
        print(f"tune: 4 trials at 0.25 GPU each in {sweep['s']:.0f} s")
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
