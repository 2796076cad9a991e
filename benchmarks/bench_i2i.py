"""Cost of the image-to-image family on the demo architectures (configs/i2i_demo.yaml, the
diffusion inpainter, and configs/i2i_mae.yaml, the masked autoencoder).

Prints, measured in one run (random weights: cost only, so no pretraining is needed):
- per kind, an encoder-unlearning (``i2i_encoder``) optimiser step through the
  ``Unlearner`` / a bare step on the same images: the encoder's forward + backward + AdamW
  step on the retain and forget batch together, plus one frozen-encoder forward of them
  (target <= 1.3x; the method also draws each forget image's noise and runs the frozen
  encoder on it, so the bare step is its floor);
- the inpainter's completion of a batch (DDIM, the demo's ``eval.sampler_steps``) against
  the UNet alone, forward time at the batch x steps (target >= 0.9x).

On CUDA (when present) everything runs there, under the loop's bfloat16 autocast.

Run: .venv/bin/python benchmarks/bench_i2i.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, interleaved  # noqa: E402

TARGETS = {"encoder step / bare": 1.3, "sampling": 0.9}
CONFIGS = {"inpaint_ddpm": "i2i_demo.yaml", "mae": "i2i_mae.yaml"}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _setup(kind: str, device: str):
    import torch

    from unlearn.agents import get_agent
    from unlearn.config import load_config
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.families.i2i.pretrain import build_for
    from unlearn.methods import get_method
    from unlearn.unlearner import Unlearner

    cfg = load_config(
        REPO / "configs" / CONFIGS[kind],
        ["workdir=/tmp/unlearn-bench", "tracking.enabled=false", f"device={device}"],
    )
    torch.manual_seed(0)
    r = cfg.data.resolution
    model = build_for(cfg, 1, r, 10).to(device)
    model.set_mask(cfg.i2i.task, cfg.i2i.mask_ratio)
    n = 512
    g = torch.Generator().manual_seed(0)
    retain = ImageData(torch.rand((n, 1, r, r), generator=g) * 2 - 1, torch.zeros(n).long(), 10)
    forget = ImageData(torch.rand((n, 1, r, r), generator=g) * 2 - 1, torch.ones(n).long(), 10)
    split = ForgetSplit(retain, forget, torch.zeros(2 * n, dtype=torch.bool))
    unl = Unlearner(
        model,
        get_method(cfg.method),
        get_agent(cfg.agent, default_lam=0.5),
        split,
        cfg,
        device,
        grad_stats_every=0,
    )
    return cfg, model, unl, retain, forget


def step_ratio(kind: str, device: str) -> tuple[float, float, float]:
    """(encoder-unlearning step, bare step) in seconds and their ratio."""
    import copy

    import torch

    cfg, model, unl, retain, forget = _setup(kind, device)
    b = cfg.unlearn.batch_size
    x = torch.cat([retain.images[:b], forget.images[:b]]).to(device)
    frozen = copy.deepcopy(model).requires_grad_(False)
    params = model.encoder_parameters()
    opt = torch.optim.AdamW(params, lr=1e-6)
    g = torch.Generator().manual_seed(0)
    t = model.sample_t(x.shape[0], g).to(device)
    eps = torch.randn(x.shape, generator=g).to(device)

    def bare() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            target = frozen.encode(x, t, eps)
        feats = model.encode(x, t, eps)
        loss = sum(
            (f.float() - y.float()).pow(2).mean() for f, y in zip(feats, target, strict=True)
        )
        loss.backward()
        opt.step()

    times = interleaved({"step": lambda: unl.step(1), "bare": bare}, repeat=7, number=3)
    return times["step"], times["bare"], times["step"] / times["bare"]


def sampling_ratio(device: str) -> tuple[float, float, float, int, int]:
    """(completion s, UNet-forwards s, ratio, batch, steps) of the inpainter."""
    import torch

    cfg, model, _, retain, _ = _setup("inpaint_ddpm", device)
    n, steps = min(cfg.eval.batch_size, 200), cfg.eval.sampler_steps
    x = retain.images[:n].to(device)
    model.eval()
    inp = torch.randn(n, 2 * model.channels + 1, model.resolution, model.resolution).to(device)
    tt = torch.full((n,), 500, device=device)

    def complete() -> None:
        model.complete(x, steps=steps, generator=torch.Generator().manual_seed(0))

    def unet_forwards() -> None:  # the ideal: steps UNet forwards at the batch
        with torch.no_grad():
            for _ in range(steps):
                model.unet(inp, tt)

    st = interleaved({"complete": complete, "unet": unet_forwards}, repeat=5, number=1)
    return st["complete"], st["unet"], st["unet"] / st["complete"], n, steps


def main() -> dict[str, float]:
    device = _device()
    ratios: dict[str, float] = {}
    for kind in CONFIGS:
        step, bare, ratio = step_ratio(kind, device)
        ratios[f"{kind} encoder step / bare"] = ratio
        print(
            f"{kind}: i2i_encoder step {step * 1e3:.1f} ms vs bare encoder fwd+bwd+AdamW and "
            f"one frozen-encoder forward on the same images {bare * 1e3:.1f} ms: {ratio:.2f}x "
            f"(target <= {TARGETS['encoder step / bare']}x) ({device})"
        )
    done, ideal, ratio, n, steps = sampling_ratio(device)
    ratios["inpaint_ddpm sampling"] = ratio
    print(
        f"inpaint_ddpm completion of {n} images ({steps} DDIM steps) {done:.2f} s vs UNet "
        f"forward x {steps} {ideal:.2f} s: {ratio:.2f}x (target >= {TARGETS['sampling']}x)"
    )
    return ratios


if __name__ == "__main__":
    main()
