"""Cost at Stable Diffusion 1.5's size on this machine: SD-1.5's UNet, VAE and CLIP ViT-L/14
text encoder built from their published configurations (``unlearn.models.t2i.sd15``, random
weights, nothing downloaded), at 512 px (64x64 latents).

Prints, each measured in a process of its own (so its peak resident memory is its own):
- an ESD step with LoRA rank 8 through the ``Unlearner`` (``configs/sd15.yaml``'s method
  and LoRA; one forget and one retain latent: the trained UNet runs on 2 rows, the frozen
  original once on 3) against a bare forward + backward + AdamW step of the same LoRA UNet
  on the same 2 rows;
- a full-UNet ESD step (AdamW over all 860M UNet weights: about 17 GiB; skipped, and said
  so, when the machine has less memory available);
- seconds per sampling step with guidance 7.5 (one image: the conditional and unconditional
  branches in one UNet forward of 2 rows, plus the DDIM update) against that UNet forward;
- the peak resident memory of each.

``--sdxl``: the same measurements on SDXL base 1.0's UNet, VAE and both text encoders
(``unlearn.models.sdxl.published``, ``configs/sdxl.yaml``'s method and LoRA) at the largest
of 1024 / 768 / 512 / 384 / 256 px whose LoRA ESD step's peak memory (GPU memory on CUDA,
resident memory on the CPU) fits ``--budget-gib`` (24 by default) and is not killed for
memory; each side is tried in a process of its own, largest first.

Run: .venv/bin/python benchmarks/bench_sd_scale.py   (several GiB of RAM; minutes on 2 cores)
     [--cuda] on a GPU; [--width 0.05] the same code on SD-1.5's structure at reduced widths;
     [--sdxl [--budget-gib 24]] SDXL base instead; [--max-px 512] skip the larger sides (on a
     CPU one SDXL step at 1024 px takes many minutes); [--repeat N] timed calls per phase
     after the warm-up (default 2)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402

PROMPTS = ["a painting in the style of van gogh", "a photo of a city street at night"]
WORDS = tuple(sorted({w for p in PROMPTS for w in p.split()}))
#: GiB a full-UNet AdamW step needs (weights, frozen copy, gradients, two moments, activations)
FULL_UNET_GIB = 20.0


#: the real-checkpoint config and the latent sides (largest first) of each model
MODELS = {"sd15": ("sd15.yaml", (64,)), "sdxl": ("sdxl.yaml", (128, 96, 64, 48, 32))}


def _cfg(train: str, device: str, family: str = "sd15"):
    from unlearn.config import load_config

    return load_config(
        REPO / "configs" / MODELS[family][0],
        [
            "workdir=/tmp/unlearn-bench",
            "tracking.enabled=false",
            f"device={device}",
            f"model.train={train}",
            "unlearn.batch_size=2",
        ],
    )


def _build(family: str, width: float, side: int):
    if family == "sdxl":
        from unlearn.models.sdxl.published import sdxl_base_model

        return sdxl_base_model(width, WORDS, sample_size=side)
    from unlearn.models.t2i.sd15 import sd15_model

    return sd15_model(width, WORDS, sample_size=side)


def _unlearner(train: str, device: str, width: float = 1.0, family: str = "sd15", side: int = 64):
    import torch

    from unlearn.agents import get_agent
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.methods import get_method
    from unlearn.unlearner import Unlearner

    cfg = _cfg(train, device, family)
    model = _build(family, width, side)
    model.configure_training(train, lora_rank=cfg.model.lora_rank)
    ids = model.set_prompts(PROMPTS)
    model.to(device)
    lat = (model.channels, model.resolution, model.resolution)
    forget = ImageData(torch.randn(4, *lat), torch.tensor([ids[0]] * 4), 0)
    retain = ImageData(torch.randn(4, *lat), torch.tensor([ids[1]] * 4), 0)
    split = ForgetSplit(retain, forget, torch.zeros(8, dtype=torch.bool))
    agent = get_agent(cfg.agent, default_lam=cfg.method.lam)
    unl = Unlearner(model, get_method(cfg.method), agent, split, cfg, device, grad_stats_every=0)
    return cfg, model, unl, ids


def _timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    import statistics

    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def phase(
    name: str,
    device: str,
    repeat: int,
    width: float = 1.0,
    family: str = "sd15",
    side: int = 64,
) -> dict:
    """One measurement in this process: seconds and what it ran on."""
    import torch

    torch.manual_seed(0)
    if name in ("esd_lora", "esd_full"):
        train = "lora" if name == "esd_lora" else "unet"
        _, model, unl, _ = _unlearner(train, device, width, family, side)
        sec = _timed(lambda: unl.step(1), repeat)
        trained = sum(p.numel() for p in model.trainable_parameters())
        return {"s": sec, "trained": trained}
    cfg, model, unl, ids = _unlearner("lora", device, width, family, side)
    lat = (2, model.channels, model.resolution, model.resolution)
    x, t = torch.randn(lat, device=device), torch.tensor([500, 500], device=device)
    lab = torch.tensor(ids[:2], device=device)
    if name == "bare":
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)

        cuda = device.startswith("cuda")  # the loop's bfloat16 autocast there

        def bare() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = model.eps(x, t, lab).float().pow(2).mean()
            loss.backward()
            opt.step()

        return {"s": _timed(bare, repeat)}
    model.eval()
    emb = model.encode_cond(PROMPTS[:1])
    steps = 3

    def sample() -> None:
        model.sample_latents(emb, steps, 7.5, torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model.eps(x, t, lab)

    return {"s": _timed(sample, repeat) / steps, "unet_forward_s": _timed(forward, repeat)}


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _child(
    name: str, device: str, repeat: int, width: float, family: str = "sd15", side: int = 64
) -> dict:
    args = [name, device, str(repeat), str(width), family, str(side)]
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode < 0:
        sig = -out.returncode
        why = " (SIGKILL: the kernel's out-of-memory killer sends it)" if sig == 9 else ""
        return {"error": f"killed by signal {sig}{why}"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak(r: dict, device: str) -> float:
    return r.get("peak_gpu_gib" if device == "cuda" else "peak_gib", float("inf"))


def main(
    device: str = "cpu",
    repeat: int = 2,
    width: float = 1.0,
    family: str = "sd15",
    budget_gib: float = 24.0,
    max_px: int | None = None,
) -> dict[str, dict]:
    """Every measurement; ``width`` < 1 runs the same code on reduced widths (a smoke run);
    ``max_px`` leaves out the sides above it (said in the output)."""
    res: dict[str, dict] = {}
    sides = MODELS[family][1]
    if max_px is not None:
        kept = tuple(x for x in sides if x * 8 <= max_px) or sides[-1:]
        left = [x * 8 for x in sides if x not in kept]
        if left:
            print(f"  not tried (--max-px {max_px}): {', '.join(f'{p} px' for p in left)}")
        sides = kept
    side = sides[-1]
    for side in sides:  # the largest side whose LoRA ESD step fits the budget
        res["esd_lora"] = _child("esd_lora", device, repeat, width, family, side)
        print(f"  esd_lora at {side * 8} px: {res['esd_lora']}", flush=True)
        if len(sides) == 1 or _peak(res["esd_lora"], device) <= budget_gib:
            break
    res["side"] = {"latent": side, "px": side * 8, "budget_gib": budget_gib}
    for name in ("bare", "sample"):
        res[name] = _child(name, device, repeat, width, family, side)
        print(f"  {name}: {res[name]}", flush=True)
    avail = _available_gib()
    if device == "cpu" and avail < FULL_UNET_GIB * width:
        res["esd_full"] = {"skipped": f"{avail:.1f} GiB available < {FULL_UNET_GIB} GiB"}
    else:
        res["esd_full"] = _child("esd_full", device, repeat, width, family, side)
    print(f"  esd_full: {res['esd_full']}", flush=True)
    b, e, s = res["bare"], res["esd_lora"], res["sample"]
    name = {"sd15": "SD-1.5", "sdxl": "SDXL base"}[family]
    size = f"{name} size" if width >= 1 else f"{name} structure at width {width}"
    print(f"{size} on {device}, {side * 8} px ({side}x{side} latents), random weights:")
    if "s" in b and "s" in e:
        print(
            f"ESD step, LoRA rank 8 ({e['trained']:,} trained parameters): {e['s']:.2f} s "
            f"(peak RSS {e['peak_gib']:.1f} GiB) vs bare LoRA UNet fwd+bwd+AdamW at the same 2 "
            f"rows {b['s']:.2f} s (peak RSS {b['peak_gib']:.1f} GiB): {e['s'] / b['s']:.2f}x"
        )
    f = res["esd_full"]
    if "s" in f:
        print(f"full-UNet ESD step: {f['s']:.2f} s (peak RSS {f['peak_gib']:.1f} GiB)")
    else:
        print(f"full-UNet ESD step: not run ({f.get('skipped') or f.get('error')})")
    if "s" in s:
        print(
            f"sampling with guidance 7.5: {s['s']:.2f} s per step (one image; peak RSS "
            f"{s['peak_gib']:.1f} GiB) vs its UNet forward of 2 rows {s['unet_forward_s']:.2f} s: "
            f"{s['unet_forward_s'] / s['s']:.2f}x"
        )
    return res


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        import torch

        from unlearn.runtime import set_threads

        set_threads()
        a = sys.argv
        out = phase(a[2], a[3], int(a[4]), float(a[5]), a[6], int(a[7]))
        if sys.argv[3] == "cuda":
            out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(out))
    else:
        w = float(sys.argv[sys.argv.index("--width") + 1]) if "--width" in sys.argv else 1.0

        def arg(flag: str, kind, default):
            return kind(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default

        main(
            "cuda" if "--cuda" in sys.argv else "cpu",
            repeat=arg("--repeat", int, 2),
            width=w,
            family="sdxl" if "--sdxl" in sys.argv else "sd15",
            budget_gib=arg("--budget-gib", float, 24.0),
            max_px=arg("--max-px", int, None),
        )
