"""The demo's ``policy`` part: the shipped RL λ policy on a held-out class of the demo model.

The policy in ``unlearn/assets/policy/`` was trained with PPO on the demo DDPM's env (train
classes only; its README has the exact command, compute and returns). This part unlearns
the first held-out class (``env.test_instances``) with it, beside the two hand-set
baselines a user would try first, a static λ (``method.lam``) and a linear decay
(``bench.decay`` or :data:`DEMO_DECAY`), and plots the three λ trajectories. A policy with
a stop action may end its run early; the table says how many steps each run used.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from unlearn.config import AgentConfig, Config, ConfigError
from unlearn.runtime import ProgressFn

#: the shipped demo-model policy (TorchScript + metadata.json + README.md)
SHIPPED_POLICY = Path(__file__).resolve().parents[1] / "assets" / "policy"
#: the decay baseline when the config has no ``bench.decay`` (λ 0.5 → 0.05, linear)
DEMO_DECAY = {"start": 0.5, "end": 0.05}


def _agents(cfg: Config, policy_dir: Path) -> dict[str, tuple[AgentConfig, float | None]]:
    """agent label -> (agent section, forget scale or None = the config's)."""
    from unlearn.bench.baselines import decay_agent, decay_from_config

    decay = decay_from_config(cfg) if cfg.bench.decay else dict(DEMO_DECAY)
    return {
        "static": (AgentConfig("static", "", {"lam": float(cfg.method.lam)}), None),
        "decay": (decay_agent(decay["start"], decay["end"]), decay.get("scale")),
        "policy": (AgentConfig("policy", str(policy_dir), {}), None),
    }


def policy_section(
    cfg: Config, sections: list[str], out: Path, progress: ProgressFn, results: dict
) -> dict:
    """Run the three agents on the first held-out class; append the section; return facts.

    ``results`` gains one :class:`~unlearn.metrics.EvalResult` per agent (the summary table).
    """
    from unlearn.export.policy_file import read_metadata
    from unlearn.metrics.plots import plot_lambda
    from unlearn.run import run

    if not cfg.env.test_instances:
        raise ConfigError("env.test_instances: empty; the policy part unlearns a held-out class")
    meta = read_metadata(SHIPPED_POLICY)
    c = int(cfg.env.test_instances[0])
    n = cfg.eval.num_samples
    base_cfg = dataclasses.replace(
        cfg,
        forget=dataclasses.replace(cfg.forget, classes=(c,), indices=()),
    )
    lines = [
        "## Shipped RL policy on a held-out class",
        "",
        f"Forget class {c} (held out: never seen in the policy's training) with `"
        f"{cfg.method.name}`, budget {cfg.unlearn.steps} steps, {n} evaluation samples. "
        f"The policy (`{SHIPPED_POLICY.name}/`, {meta['algorithm'].upper()}, decides every "
        f"{meta['steps_per_decision']} steps; actions {', '.join(meta['action']['names'])}; "
        f"training: {meta.get('training') or 'not recorded'}) beside a static λ and a "
        "linear decay.",
        "",
        "| agent | forget rate before | after | FID before | after | steps used | wall time (s) "
        "| MLflow run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lams: dict[str, list[float]] = {}
    facts: dict[str, dict] = {}
    before = None
    for name, (agent, scale) in _agents(cfg, SHIPPED_POLICY).items():
        method = base_cfg.method
        if scale is not None:
            method = dataclasses.replace(method, scale=float(scale))
        res = run(
            dataclasses.replace(base_cfg, agent=agent, method=method), progress, before=before
        )
        before = res.before  # the base model is evaluated once
        lams[name] = res.lambdas
        results[f"class {c}: {cfg.method.name} + {name} λ"] = res.after
        src = Path(res.model_dir).parent / "after.png"
        if src.exists():
            shutil.copy(src, out / f"policy_part_{name}_after.png")
        b = res.before
        lines.append(
            f"| {name} | {b.forget_rate:.3f} | {res.after.forget_rate:.3f} | {b.fid:.3g} | "
            f"{res.after.fid:.3g} | {res.steps} | {res.wall_time:.1f} | `{res.run_id}` |"
        )
        facts[name] = {
            "steps": res.steps,
            "lambdas": res.lambdas,
            "forget_rate": res.after.forget_rate,
            "fid": res.after.fid,
        }
    plot_lambda(lams, out / "policy_lambda.png")
    lines += ["", f"![λ trajectories: {', '.join(lams)}](policy_lambda.png)", ""]
    lines += [f"{a}: ![{a}](policy_part_{a}_after.png)" for a in lams]
    sections.append("\n".join(lines) + "\n")
    return {"instance": c, "samples": n, "agents": facts}
