"""Cost of the text-to-image family on the demo pipeline's architecture (configs/t2i_demo.yaml).

Prints, measured in one run (random weights: cost only, so no pretraining is needed):
- an ESD optimiser step through the ``Unlearner`` / a bare ``UNet2DConditionModel``
  forward + backward + AdamW step at the same batch (target <= 1.6x); ESD's frozen original
  runs one batched forward of 1.5x the batch (∅ and c on the forget half, c_r on the retain
  half);
- sampling: images/s of ``T2IModel.generate`` (text encoding, guided DDIM, VAE decoding)
  against the UNet alone, (UNet forward time at the batch × steps × 2 for guidance)
  (target >= 0.9x: the guided batch runs as one forward of twice the batch).

Run: .venv/bin/python benchmarks/bench_t2i.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, interleaved  # noqa: E402

TARGETS = {"esd / bare": 1.6, "sampling": 0.9}


def _setup():
    import torch

    from unlearn.agents import get_agent
    from unlearn.config import load_config
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.data.captions import VOCABULARY
    from unlearn.methods import get_method
    from unlearn.models.t2i import build_t2i
    from unlearn.unlearner import Unlearner

    cfg = load_config(
        REPO / "configs" / "t2i_demo.yaml",
        ["workdir=/tmp/unlearn-bench", "tracking.enabled=false", "device=cpu"],
    )
    torch.manual_seed(0)
    model = build_t2i(cfg, VOCABULARY, 1, cfg.data.resolution)
    ids = model.set_prompts([*cfg.forget.prompts, *cfg.forget.retain_prompts])
    n, lat = 256, (model.channels, model.resolution, model.resolution)
    k = len(cfg.forget.prompts)
    forget = ImageData(torch.randn(n, *lat), torch.tensor(ids[:k]).repeat(n // k + 1)[:n], 0)
    retain = ImageData(torch.randn(n, *lat), torch.tensor(ids[k:]).repeat(n)[:n], 0)
    split = ForgetSplit(retain, forget, torch.zeros(2 * n, dtype=torch.bool))
    unl = Unlearner(
        model,
        get_method(cfg.method),
        get_agent(cfg.agent, default_lam=0.8),
        split,
        cfg,
        "cpu",
        grad_stats_every=0,
    )
    return cfg, model, unl, retain


def main() -> dict[str, float]:
    import torch

    cfg, model, unl, retain = _setup()
    b = cfg.unlearn.batch_size
    x, lab = retain.images[:b], retain.labels[:b]
    t = model.sample_t(b, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.unet.parameters(), lr=1e-6)

    def bare() -> None:
        opt.zero_grad(set_to_none=True)
        model.eps(x, t, lab).pow(2).mean().backward()
        opt.step()

    times = interleaved({"esd": lambda: unl.step(1), "bare": bare}, repeat=7, number=3)
    esd_ratio = times["esd"] / times["bare"]

    steps, g, n = cfg.eval.sampler_steps, cfg.t2i.guidance, cfg.eval.batch_size
    n = min(n, 64)
    prompts = [cfg.forget.retain_prompts[i % len(cfg.forget.retain_prompts)] for i in range(n)]
    z = torch.randn(n, model.channels, model.resolution, model.resolution)
    emb = model.encode_text(prompts)
    tt = torch.full((n,), 500)
    model.eval()

    def sample() -> None:
        model.generate(prompts, steps, g, torch.Generator().manual_seed(0), batch_size=n)

    def unet_forward() -> None:
        with torch.no_grad():
            model.unet(z, tt, encoder_hidden_states=emb)

    st = interleaved({"sample": sample, "unet": unet_forward}, repeat=3, number=1)
    ideal = st["unet"] * steps * 2
    sampling_ratio = ideal / st["sample"]
    print(
        f"t2i demo architecture: UNet {sum(p.numel() for p in model.unet.parameters()):,} "
        f"parameters, latents {model.channels}x{model.resolution}x{model.resolution}"
    )
    print(
        f"ESD step {times['esd'] * 1e3:.1f} ms vs bare UNet fwd+bwd+AdamW {times['bare'] * 1e3:.1f}"
        f" ms at batch {b}: {esd_ratio:.2f}x (target <= {TARGETS['esd / bare']}x); frozen-model "
        f"forwards per step: 1 (batch {b // 2 * 3})"
    )
    print(
        f"sampling {n / st['sample']:.1f} images/s ({steps} DDIM steps, guidance {g}, batch {n});"
        f" UNet forward {st['unet'] * 1e3:.1f} ms x {steps} x 2 = {ideal:.2f} s vs "
        f"{st['sample']:.2f} s: {sampling_ratio:.2f}x (target >= {TARGETS['sampling']}x)"
    )
    return {"esd / bare": esd_ratio, "sampling": sampling_ratio}


if __name__ == "__main__":
    main()
