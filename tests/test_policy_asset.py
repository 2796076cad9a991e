"""The shipped demo-model policy (``unlearn/assets/policy/``): small, documented, loads and
acts without Ray, and drives an unlearning run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_asset_is_small_documented_and_matches_this_layout():
    from unlearn.demo import SHIPPED_POLICY
    from unlearn.export.policy_file import read_metadata
    from unlearn.observation import layout

    meta = read_metadata(SHIPPED_POLICY)  # checks the observation layout and action bounds
    assert sum(f.stat().st_size for f in SHIPPED_POLICY.iterdir()) < 200_000
    lay = layout(meta["scale_action"], meta["forget_probe"] > 0)
    assert meta["observation"]["names"] == list(lay.names)
    assert meta["training"]["env_steps"] > 0
    readme = (SHIPPED_POLICY / "README.md").read_text()
    for fragment in ("unlearn rl train", "unlearn policy export", "Returns per iteration"):
        assert fragment in readme, fragment


def test_asset_acts_without_ray_inside_its_bounds():
    from unlearn.demo import SHIPPED_POLICY

    code = f"""
import sys, json
sys.modules["ray"] = None
import numpy as np
from unlearn.agents import get_agent
from unlearn.config import AgentConfig
from unlearn.observation import layout
agent = get_agent(AgentConfig(name="policy", path={str(SHIPPED_POLICY)!r}), default_lam=0.5)
meta = agent.policy.meta
lay = layout(meta["scale_action"], meta["forget_probe"] > 0)
obs = np.random.default_rng(0).uniform(lay.low, lay.high, (50, lay.size)).astype(np.float32)
print(json.dumps(np.asarray(agent.policy(obs)).tolist()))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    a = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert a.shape[0] == 50 and np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()


def _run(tiny_workdir: Path, c: int, steps: int):
    from unlearn.config import load_config
    from unlearn.demo import SHIPPED_POLICY
    from unlearn.task import make_unlearner

    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={tiny_workdir}",
            "tracking.enabled=false",
            "agent.name=policy",
            f"agent.path={SHIPPED_POLICY}",
            f"forget.classes=[{c}]",
            f"unlearn.steps={steps}",
        ],
    )
    unl = make_unlearner(cfg).unlearner
    unl.reset(0)
    return unl, unl.run()


@pytest.mark.slow
def test_asset_runs_past_step_0_and_its_lambda_depends_on_the_instance(tiny_workdir: Path):
    """What the shipped policy measurably does: it does not stop at its first decision (the
    old one did), and its λ differs between two forget classes from the first decision on
    (the observation's instance fields) and between decisions of one run."""
    runs = {c: _run(tiny_workdir, c, 60) for c in (2, 8)}
    lams = {}
    for c, (unl, res) in runs.items():
        assert res.status == "finished" and res.steps > 0, c
        assert len(res.lambdas) == res.steps and all(0.0 <= v <= 1.0 for v in res.lambdas)
        if res.steps < 60:  # the policy's stop: only at a decision boundary, and said so
            assert res.steps % unl.agent.K == 0 and unl.agent.stopped
            assert res.message == f"stopped by agent 'policy' after {res.steps} of 60 steps"
        lams[c] = np.array(res.lambdas[:: unl.agent.K])  # one λ per decision
    assert abs(lams[2][0] - lams[8][0]) > 1e-3  # the first λ: only the instance differs
    assert np.ptp(lams[2]) > 1e-3 or np.ptp(lams[8]) > 1e-3  # λ changes during a run
