"""Cost of the text-to-image family on the demo pipeline's architecture (configs/t2i_demo.yaml,
or ``--config configs/sdxl_demo.yaml``: the SDXL demo's, both text encoders and the added
conditioning included).

Prints, measured in one run (random weights: cost only, so no pretraining is needed):
- an ESD optimiser step through the ``Unlearner`` / a bare ``UNet2DConditionModel``
  forward + backward + AdamW step at the same batch (target <= 1.6x); ESD's frozen original
  runs one batched forward of 1.5x the batch (∅ and c on the forget half, c_r on the retain
  half);
- sampling: images/s of ``T2IModel.generate`` (text encoding, guided DDIM, VAE decoding)
  against the UNet alone, (UNet forward time at the batch × steps × 2 for guidance)
  (target >= 0.9x: the guided batch runs as one forward of twice the batch);
- generation of a data-free concept set (``data.source: generate``: guided DDIM, VAE decoding,
  the cached chunk files written) against the UNet alone at the chunk's batch (target >=
  0.9x);
- every t2i method's step (ESD, f-divergence, constrained reverse-KL / likelihood, VDU, SISS,
  naive, NegGrad) / the bare step, with its frozen-model forwards counted by a hook on the
  frozen UNet (calls and rows per step), and on CUDA the peak memory of each;
- a LoRA (rank 4) ESD step / the full-UNet ESD step.

On CUDA (when present) everything runs there, under the loop's bfloat16 autocast.

Run: .venv/bin/python benchmarks/bench_t2i.py [--config configs/sdxl_demo.yaml]
     (a few minutes on 2 cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, interleaved  # noqa: E402

TARGETS = {"esd / bare": 1.6, "sampling": 0.9, "generation": 0.9}


METHODS = {
    "esd": {},
    "fdiv": {"anchor": "prompt"},
    "constrained-rkl": {"target": "reverse_kl"},
    "constrained-lik": {"target": "likelihood"},
    "vdu": {},
    "siss": {},
    "naive": {},
    "neggrad": {},
}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _setup(device: str = "cpu", config: str = "configs/t2i_demo.yaml"):
    import torch

    from unlearn.agents import get_agent
    from unlearn.config import load_config
    from unlearn.data import ForgetSplit, ImageData
    from unlearn.data.captions import VOCABULARY
    from unlearn.methods import get_method
    from unlearn.models.sdxl import build_sdxl
    from unlearn.models.t2i import build_t2i
    from unlearn.unlearner import Unlearner

    cfg = load_config(
        REPO / config,
        ["workdir=/tmp/unlearn-bench", "tracking.enabled=false", f"device={device}"],
    )
    torch.manual_seed(0)
    build = build_sdxl if cfg.model.kind == "sdxl" else build_t2i
    model = build(cfg, VOCABULARY, 1, cfg.data.resolution).to(device)
    ids = model.set_prompts([*cfg.forget.prompts, *cfg.forget.retain_prompts, cfg.forget.anchor])
    model.anchor_id = ids[-1]
    ids = ids[:-1]
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
        device,
        grad_stats_every=0,
    )
    return cfg, model, unl, retain, split


def _unlearner(cfg, model, split, method: str, options: dict, device: str):
    from unlearn.agents import get_agent
    from unlearn.config import MethodConfig
    from unlearn.methods import get_method
    from unlearn.unlearner import Unlearner

    name = method.split("-")[0]
    m = get_method(MethodConfig(name=name, lam=0.8, options=options))
    return Unlearner(
        model, m, get_agent(cfg.agent, default_lam=0.8), split, cfg, device, grad_stats_every=0
    )


def _frozen_unet(method):
    """The frozen UNet copy a method compares against (None: it runs no frozen model)."""
    for attr in ("ref_unet", "anchor", "pretrained"):
        ref = getattr(method, attr, None)
        if ref is not None:
            return getattr(ref, "unet", ref)
    return None


def method_costs(cfg, model, split, bare, device: str) -> dict[str, dict[str, float]]:
    """Per method: step / bare step, frozen forwards (calls, rows) per step, CUDA peak MiB."""
    import torch

    out: dict[str, dict[str, float]] = {}
    for name, options in METHODS.items():
        unl = _unlearner(cfg, model, split, name, options, device)
        calls = {"n": 0, "rows": 0}
        ref = _frozen_unet(unl.method)
        if ref is not None:

            def hook(_mod, args, kwargs, calls=calls):
                calls["n"] += 1
                calls["rows"] += int(args[0].shape[0])

            ref.register_forward_pre_hook(hook, with_kwargs=True)
        unl.step(1)
        per = {"calls": calls["n"], "rows": calls["rows"]}
        peak = float("nan")
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            unl.step(2)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        t = interleaved({"m": lambda u=unl: u.step(1), "bare": bare}, repeat=5, number=2)
        out[name] = {
            "ratio": t["m"] / t["bare"],
            "ms": t["m"] * 1e3,
            "frozen_calls": per["calls"],
            "frozen_rows": per["rows"],
            "peak_mib": peak,
        }
    return out


def _rows(v, b: int):
    """The first ``b`` rows of a UNet argument (a tensor, or a dict of them: SDXL's added
    conditioning)."""
    return {k: x[:b] for k, x in v.items()} if isinstance(v, dict) else v[:b]


def generation_ratio(cfg, model, device: str, per_prompt: int = 16) -> float:
    """A data-free concept set (``generate_set``: the config's forget and retain prompts,
    ``per_prompt`` images each, chunks of 64, 25 steps) generated into a fresh cache each
    time, against the ideal: the UNet's forwards x steps x 2 at the chunk's batch."""
    import dataclasses
    import itertools
    import shutil
    import tempfile

    import torch

    from unlearn.data.prompts import prompt_spec
    from unlearn.families.t2i.generate import generate_set, generated_prompts

    spec = prompt_spec(cfg.forget, model.tokenizer)
    prompts, _ = generated_prompts(spec)
    chunk = 64
    root = Path(tempfile.mkdtemp(prefix="unlearn-gen-"))
    g = dataclasses.replace(
        cfg.data.generate, per_prompt=per_prompt, chunk=chunk, steps=25, cache=""
    )
    runs = itertools.count()  # each call generates into a cache of its own

    def gen() -> None:
        c = dataclasses.replace(
            cfg,
            workdir=str(root / str(next(runs))),
            data=dataclasses.replace(cfg.data, source="generate", generate=g),
        )
        generate_set(model, c, spec, device)

    n = len(prompts) * per_prompt
    sizes = [min(chunk, n - s) for s in range(0, n, chunk)]  # the chunks generate_set runs
    z = torch.randn(chunk, model.channels, model.resolution, model.resolution).to(device)
    tt = torch.full((chunk,), 500, device=device)
    model.eval()
    with torch.no_grad():
        kwargs = model.unet_kwargs(
            model.encode_cond([prompts[i % len(prompts)] for i in range(chunk)])
        )

    def unet_forwards() -> None:  # the ideal for the whole set: each chunk's forwards
        with torch.no_grad():
            for b in sizes:
                kw = {k: _rows(v, b) for k, v in kwargs.items()}
                for _ in range(2 * g.steps):
                    model.unet(z[:b], tt[:b], **kw)

    try:
        t = interleaved({"gen": gen, "unet": unet_forwards}, repeat=3, number=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = t["unet"] / t["gen"]
    print(
        f"generation of a concept set: {n} images ({len(prompts)} prompts x {per_prompt}, "
        f"chunks of {chunk}, {g.steps} steps, guidance {g.guidance}) in {t['gen']:.2f} s, "
        f"{n / t['gen']:.1f} images/s; UNet forwards x steps x 2 {t['unet']:.2f} s: "
        f"{ratio:.2f}x (target >= {TARGETS['generation']}x)"
    )
    return ratio


def main(config: str = "configs/t2i_demo.yaml") -> dict[str, float]:
    import copy

    import torch

    device = _device()
    cfg, model, unl, retain, split = _setup(device, config)
    base_state = copy.deepcopy(model.state_dict())
    b = cfg.unlearn.batch_size
    x, lab = retain.images[:b].to(device), retain.labels[:b].to(device)
    t = model.sample_t(b, torch.Generator().manual_seed(0)).to(device)
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
    z = torch.randn(n, model.channels, model.resolution, model.resolution).to(device)
    with torch.no_grad():  # SDXL: the pooled embedding and time ids as well
        kwargs = model.unet_kwargs(model.encode_cond(prompts))
    tt = torch.full((n,), 500, device=device)
    model.eval()

    def sample() -> None:
        model.generate(prompts, steps, g, torch.Generator().manual_seed(0), batch_size=n)

    def unet_forwards() -> None:  # the ideal: steps x 2 UNet forwards at the batch, timed as one
        with torch.no_grad():
            for _ in range(2 * steps):
                model.unet(z, tt, **kwargs)

    # both calls last about as long, so a busy CPU slows them alike
    st = interleaved({"sample": sample, "unet": unet_forwards}, repeat=5, number=1)
    ideal = st["unet"]
    sampling_ratio = ideal / st["sample"]
    print(
        f"{cfg.name} architecture: UNet {sum(p.numel() for p in model.unet.parameters()):,} "
        f"parameters, latents {model.channels}x{model.resolution}x{model.resolution}"
    )
    print(
        f"ESD step {times['esd'] * 1e3:.1f} ms vs bare UNet fwd+bwd+AdamW {times['bare'] * 1e3:.1f}"
        f" ms at batch {b}: {esd_ratio:.2f}x (target <= {TARGETS['esd / bare']}x); frozen-model "
        f"forwards per step: 1 (batch {b // 2 * 3})"
    )
    print(
        f"sampling {n / st['sample']:.1f} images/s ({steps} DDIM steps, guidance {g}, batch {n});"
        f" UNet forward {ideal / (2 * steps) * 1e3:.1f} ms x {steps} x 2 = {ideal:.2f} s vs "
        f"{st['sample']:.2f} s: {sampling_ratio:.2f}x (target >= {TARGETS['sampling']}x)"
    )
    gen_ratio = generation_ratio(cfg, model, device)
    model.train()
    model.load_state_dict(base_state)
    costs = method_costs(cfg, model, split, bare, device)
    print(f"per-method step vs bare UNet fwd+bwd+AdamW at batch {b} ({device}):")
    for name, c in costs.items():
        mem = "" if device != "cuda" else f", peak {c['peak_mib']:.0f} MiB"
        print(
            f"  {name:16s} {c['ms']:7.1f} ms  {c['ratio']:5.2f}x  frozen forwards per step: "
            f"{c['frozen_calls']} ({c['frozen_rows']} rows){mem}"
        )

    model.load_state_dict(base_state)
    lora = copy.deepcopy(model)
    lora.configure_training("lora", lora_rank=4)
    full = _unlearner(cfg, model, split, "esd", {}, device)
    low = _unlearner(cfg, lora, split, "esd", {}, device)
    lt = interleaved({"lora": lambda: low.step(1), "full": lambda: full.step(1)}, repeat=5)
    lora_ratio = lt["lora"] / lt["full"]
    n_lora = sum(p.numel() for p in lora.unet.parameters() if p.requires_grad)
    print(
        f"LoRA rank 4 ESD step {lt['lora'] * 1e3:.1f} ms vs full-UNet ESD step "
        f"{lt['full'] * 1e3:.1f} ms: {lora_ratio:.2f}x ({n_lora:,} trained parameters)"
    )
    ratios = {
        "esd / bare": esd_ratio,
        "sampling": sampling_ratio,
        "generation": gen_ratio,
        "lora / full": lora_ratio,
    }
    ratios.update({f"{k} / bare": v["ratio"] for k, v in costs.items()})
    return ratios


if __name__ == "__main__":
    if "--config" in sys.argv:
        main(sys.argv[sys.argv.index("--config") + 1])
    else:
        main()
