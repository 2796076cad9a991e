"""Per-step cost of every unlearning method and of the variational agent (demo model).

Prints, measured in one run on the same model, data and batch size (the demo config):
- each method's optimiser step / a naive-deletion step (targets: SISS loss form <= 1.15x,
  SISS gradient form <= 2.2x)
- SISS + variational λ agent / SISS + static λ (target <= 1.25x)
- SISS step cost over the floor (a bare forward + backward + AdamW step at the same batch):
  loss form, exact gradient form, gradient form with ``norm_every: 10`` (target <= 1.15x)

``--quality`` adds demo-length runs (``unlearn.steps``) of the exact gradient form and of
``norm_every: 10`` from the same start: the cosine between each lagged step's direction and
the exact direction at the same weights and draws (target >= 0.99), and forget rate and FID
of both after the run (the shipped evaluation; ``--eval-samples`` sets its sample count).

Steps are timed alternately (median of repeats) with gradient statistics off, so each
number is the method's own cost. f-divergence needs a class-conditional model and is
measured on a class-conditional UNet of the demo's size (random weights: cost only).

Run: .venv/bin/python benchmarks/bench_methods.py [--quality [--eval-samples N]]
(about a minute on 2 cores; --quality adds a few minutes)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import demo_config, interleaved  # noqa: E402

#: (label, method.name, extra overrides)
METHODS = (
    ("naive", "naive", []),
    ("siss (loss form)", "siss", []),
    ("siss (gradient form)", "siss", ["method.form=gradient"]),
    ("siss_nois", "siss_nois", []),
    ("neggrad", "neggrad", []),
    ("erasediff", "erasediff", []),
    ("vdu", "vdu", []),
    ("constrained", "constrained", []),
    ("encoder", "encoder", []),
)
TARGETS = {"siss (loss form)": 1.15, "siss (gradient form)": 2.2, "variational": 1.25}
NORM_EVERY = 10
LAGGED = f"siss (gradient form, norm_every={NORM_EVERY})"
FLOOR_TARGETS = {LAGGED: 1.15}
COSINE_TARGET = 0.99


def _unlearner(cfg, model, split, name: str, extra: list[str], agent: str = "static"):
    from unlearn.agents import get_agent
    from unlearn.config import with_overrides
    from unlearn.methods import get_method
    from unlearn.unlearner import Unlearner

    c = with_overrides(cfg, [f"method.name={name}", f"agent.name={agent}", *extra])
    unl = Unlearner(
        model,
        get_method(c.method),
        get_agent(c.agent, default_lam=c.method.lam),
        split,
        c,
        "cpu",
        grad_stats_every=0,
    )
    unl.reset(0)
    return unl


def main() -> dict[str, float]:
    import torch

    from unlearn.data import load_splits, split_forget
    from unlearn.pretrain import load_pretrained

    torch.manual_seed(0)
    cfg = demo_config("tracking.enabled=false")
    base = load_pretrained(cfg).model
    split = split_forget(load_splits(cfg.data).train, cfg.forget, None)
    # every method steps its own copy of the model: no method sees another's updates
    unls = {
        label: _unlearner(cfg, copy.deepcopy(base), split, name, extra)
        for label, name, extra in METHODS
    }
    unls["siss + variational"] = _unlearner(
        cfg, copy.deepcopy(base), split, "siss", [], agent="variational"
    )
    times = interleaved({k: (lambda u=u: u.step(1)) for k, u in unls.items()}, repeat=5, number=2)
    naive = times["naive"]
    out = {}
    print(f"{'method':28s} {'ms/step':>9s} {'x naive':>8s}  target")
    for k, t in times.items():
        ratio = t / naive
        out[k] = ratio
        target = TARGETS.get(k, "")
        print(f"{k:28s} {t * 1e3:9.1f} {ratio:8.2f}  {f'<= {target}' if target else ''}")
    out["variational"] = times["siss + variational"] / times["siss (loss form)"]
    print(
        f"variational agent overhead over static λ (SISS): {out['variational']:.3f}x "
        f"(target <= {TARGETS['variational']})"
    )
    out.update(_fdiv_ratio(cfg, split))
    out.update(_over_the_floor(cfg, base, split))
    return out


def _floor_step(model, split, batch_size: int):
    """One bare training step: forward + backward of the denoising loss, AdamW."""
    import torch

    from unlearn.methods.common import per_sample_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    images, labels = split.retain.images, split.retain.labels

    def step():
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        opt.zero_grad(set_to_none=True)
        per_sample_loss(model, images[idx], labels[idx], g).mean().backward()
        opt.step()

    return step


def _over_the_floor(cfg, base, split) -> dict[str, float]:
    """SISS loss form, exact gradient form and norm_every=K over the bare step (one run)."""
    variants = {
        "siss (loss form)": [],
        "siss (gradient form)": ["method.form=gradient"],
        LAGGED: ["method.form=gradient", f"method.options.norm_every={NORM_EVERY}"],
    }
    fns = {"floor": _floor_step(copy.deepcopy(base), split, cfg.unlearn.batch_size)}
    for label, extra in variants.items():
        u = _unlearner(cfg, copy.deepcopy(base), split, "siss", extra)
        fns[label] = lambda u=u: u.step(1)
    # NORM_EVERY steps per repeat: the lagged variant's figure includes its measuring step
    times = interleaved(fns, repeat=3, number=NORM_EVERY)
    out = {}
    print(f"\n{'SISS step':40s} {'ms/step':>9s} {'x floor':>8s}  target")
    for k, t in times.items():
        ratio = t / times["floor"]
        target = FLOOR_TARGETS.get(k)
        print(f"{k:40s} {t * 1e3:9.1f} {ratio:8.2f}  {f'<= {target}' if target else ''}")
        if k != "floor":
            out[f"{k} x floor"] = ratio
    return out


def quality(eval_samples: int | None = None) -> dict[str, float]:
    """Demo-length runs of the exact gradient form and norm_every=K: direction cosine on
    the lagged steps, then forget rate and FID of both (see the module docstring)."""
    import statistics

    import torch

    from unlearn.methods.common import dot, flat_norm
    from unlearn.task import make_unlearner

    sets = ["tracking.enabled=false", "method.form=gradient"]
    if eval_samples:
        sets.append(f"eval.num_samples={eval_samples}")
    torch.manual_seed(0)
    exact = make_unlearner(demo_config(*sets)).unlearner
    lagged = make_unlearner(demo_config(*sets, f"method.options.norm_every={NORM_EVERY}")).unlearner
    # the probe takes the exact step from the lagged run's weights, with the same draws
    probe = _unlearner(
        exact.cfg, copy.deepcopy(lagged.model), lagged.split, "siss", ["method.form=gradient"]
    )
    cosines = []
    while lagged.t < lagged.budget:
        if lagged.method.fused_step(lagged.t) is not None:
            probe.model.load_state_dict(lagged.model.state_dict())
            probe.seed, probe.t = lagged.seed, lagged.t
            probe.step(1)
            lagged.step(1)
            d_lag, d_exact = [p.grad for p in lagged.params], [p.grad for p in probe.params]
            cosines.append(float(dot(d_lag, d_exact) / (flat_norm(d_lag) * flat_norm(d_exact))))
        else:
            lagged.step(1)
    exact.run()
    out = {"cosine_mean": statistics.fmean(cosines), "cosine_min": min(cosines)}
    print(
        f"\ncosine(lagged, exact) over {len(cosines)} lagged steps of {lagged.budget}: "
        f"mean {out['cosine_mean']:.4f}, min {out['cosine_min']:.4f} (target >= {COSINE_TARGET})"
    )
    for label, unl in (("exact gradient form", exact), (LAGGED, lagged)):
        res = unl.evaluate().result
        key = "exact" if unl is exact else f"norm_every={NORM_EVERY}"
        out[f"{key} forget_rate"], out[f"{key} fid"] = res.forget_rate, res.fid
        print(
            f"{label:40s} forget rate {res.forget_rate:.4f}  FID {res.fid:.2f}  "
            f"({res.num_samples} samples, {unl.t} steps)"
        )
    return out


def _fdiv_ratio(cfg, split) -> dict[str, float]:
    """f-divergence (squared Hellinger) vs naive deletion on a class-conditional UNet."""
    from unlearn.config import with_overrides
    from unlearn.models import build_model

    c = with_overrides(cfg, ["model.kind=cond_ddpm"])
    m = build_model(c.model, 1, c.data.resolution, 10)
    unls = {
        "naive": _unlearner(c, copy.deepcopy(m), split, "naive", []),
        "fdiv": _unlearner(c, copy.deepcopy(m), split, "fdiv", []),
    }
    t = interleaved({k: (lambda u=u: u.step(1)) for k, u in unls.items()}, repeat=5, number=2)
    r = t["fdiv"] / t["naive"]
    print(f"fdiv on a class-conditional UNet: {t['fdiv'] * 1e3:.1f} ms/step, {r:.2f}x naive")
    return {"fdiv": r}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", action="store_true", help="add the demo-length runs")
    ap.add_argument("--eval-samples", type=int, default=None, help="evaluation sample count")
    ap.add_argument("--only-norm-every", action="store_true", help="only the SISS floor ratios")
    args = ap.parse_args()
    if args.only_norm_every:
        from unlearn.data import load_splits, split_forget
        from unlearn.pretrain import load_pretrained

        cfg = demo_config("tracking.enabled=false")
        split = split_forget(load_splits(cfg.data).train, cfg.forget, None)
        _over_the_floor(cfg, load_pretrained(cfg).model, split)
    else:
        main()
    if args.quality:
        quality(args.eval_samples)
