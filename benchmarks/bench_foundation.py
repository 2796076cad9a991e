"""Framework overhead of a training step, and DDIM sampling throughput of the demo model.

Prints ratios measured in one run:
- train step through the project's code / bare torch forward+backward of the same UNet
- DDIM images/s, and sampling time / (UNet forward time x steps)

Run: .venv/bin/python benchmarks/bench_foundation.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config, interleaved  # noqa: E402


def main() -> dict[str, float]:
    from unlearn.data import load_splits
    from unlearn.families.image.pretrain import _loss
    from unlearn.pretrain import load_pretrained

    cfg = demo_config()
    model, _, _ = load_pretrained(cfg)
    model.train()
    data = load_splits(cfg.data).train
    x, y = data.images[:64], data.labels[:64]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    unet = model.unet
    t = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(0))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def project_step():
        g = torch.Generator().manual_seed(0)
        loss = _loss(model, x, y, g, cond_drop=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def bare_step():
        ab = model.alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x + (1 - ab).sqrt() * eps
        loss = (unet(xt, t).sample - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    tt = interleaved({"project": project_step, "bare": bare_step})
    model.eval()
    steps, n = cfg.eval.sampler_steps, 100
    xs = torch.randn(n, 1, 16, 16)
    ts = torch.full((n,), 500)

    def fwd():
        with torch.no_grad():
            unet(xs, ts)

    def sample():
        model.sample(n, steps=steps, generator=torch.Generator().manual_seed(0), batch_size=n)

    st = interleaved({"forward": fwd, "sample": sample}, repeat=3, number=1)
    out = {
        "train_step_overhead": tt["project"] / tt["bare"],
        "ddim_images_per_s": n / st["sample"],
        "ddim_vs_forward_x_steps": st["sample"] / (st["forward"] * steps),
    }
    for k, v in out.items():
        print(f"{k:28s} {v:8.3f}")
    return out


if __name__ == "__main__":
    main()
