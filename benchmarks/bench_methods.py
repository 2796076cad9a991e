"""Per-step cost of every unlearning method and of the variational agent (demo model).

Prints, measured in one run on the same model, data and batch size (the demo config):
- each method's optimiser step / a naive-deletion step (targets: SISS loss form <= 1.15x,
  SISS gradient form <= 2.2x)
- SISS + variational λ agent / SISS + static λ (target <= 1.25x)

Steps are timed alternately (median of repeats) with gradient statistics off, so each
number is the method's own cost. f-divergence needs a class-conditional model and is
measured on a class-conditional UNet of the demo's size (random weights: cost only).

Run: .venv/bin/python benchmarks/bench_methods.py   (about a minute on 2 cores)
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


def _unlearner(cfg, model, split, name: str, extra: list[str], agent: str = "static"):
    from unlearn.agents import get_agent
    from unlearn.config import with_overrides
    from unlearn.methods import get_method
    from unlearn.unlearner import Unlearner

    c = with_overrides(cfg, [f"method.name={name}", f"agent.name={agent}", *extra])
    unl = Unlearner(model, get_method(c.method), get_agent(c.agent, default_lam=c.method.lam),
                    split, c, "cpu", grad_stats_every=0)  # fmt: skip
    unl.reset(0)
    return unl


def main() -> dict[str, float]:
    import torch

    from unlearn.data import load_splits, split_forget
    from unlearn.pretrain import load_pretrained

    torch.manual_seed(0)
    cfg = demo_config("tracking.enabled=false")
    base, _, _ = load_pretrained(cfg)
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
    print(f"variational agent overhead over static λ (SISS): {out['variational']:.3f}x "
          f"(target <= {TARGETS['variational']})")  # fmt: skip
    out.update(_fdiv_ratio(cfg, split))
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
    main()
