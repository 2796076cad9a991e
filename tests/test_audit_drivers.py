"""The audit inside the drivers: ``bench --audit`` columns (on a memorisation bench),
``env.attack_weight`` in a real env episode (``tune.objective=attacked_forget_rate`` in a
real sweep: tests/test_tune.py). Tiny models and attack budgets throughout."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import TINY

from unlearn.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
QUICK = [
    "audit.attacked_steps=3",
    "audit.relearn_forget_samples=4",
    "audit.relearn_retain_samples=32",
    "audit.relearn_batch_size=4",
    "audit.num_samples=20",
    "audit.mia_samples=8",
    "audit.mia_noise=2",
]


def test_attacked_rates_are_the_audits_last_checkpoint_and_deterministic(tiny_workdir):
    """The quick numbers equal a full audit with relearn_steps = attacked_steps, twice."""
    import copy

    from unlearn.audit import AuditInputs, attacked_rates, audit
    from unlearn.task import make_unlearner

    cfg = load_config(None, [*TINY, f"workdir={tiny_workdir}", *QUICK])
    setup = make_unlearner(cfg)
    unl = setup.unlearner
    base = copy.deepcopy(unl.model)
    unl.run()
    before = {k: v.clone() for k, v in unl.model.state_dict().items()}
    a = attacked_rates(unl, setup.task.splits.heldout)
    b = attacked_rates(unl, setup.task.splits.heldout)
    assert dataclasses.replace(a, wall_time=0) == dataclasses.replace(b, wall_time=0)
    assert all(v.equal(before[k]) for k, v in unl.model.state_dict().items())  # untouched
    assert all(0 <= v <= 1 for v in (a.attacked_forget_rate, a.benign_forget_rate, a.mia_auc))

    full = dataclasses.replace(
        cfg, audit=dataclasses.replace(cfg.audit, relearn_steps=3, relearn_every=3)
    )
    inputs = AuditInputs(
        Path("unlearned"), Path("base"), unl.model, base, unl.classifier,
        setup.task.split, setup.task.splits.heldout, False,
    )  # fmt: skip
    rep = audit(full, inputs, tiny_workdir / "audit-check").report
    last = {(c.attack, c.model): c.rates[-1] for c in rep.relearn}
    assert a.attacked_forget_rate == last["forget", "unlearned"]
    assert a.benign_forget_rate == last["retain", "unlearned"]
    assert a.mia_auc == rep.membership[1].forget


@pytest.mark.slow
def test_memorisation_bench_with_audit_columns(tiny_workdir, tmp_path):
    """An outlier config: one instance (the outlier), its rate as the forget rate, and the
    three audit columns with mean ± CI over two seeds."""
    from unlearn.bench import BenchOptions, run_bench
    from unlearn.bench.matrix import OUTLIER
    from unlearn.pretrain import train_base

    wd = tmp_path / "w"
    over = [
        *TINY, f"workdir={wd}", "forget.classes=[]", "forget.outlier.copies=40",
        "unlearn.steps=4", "unlearn.eval_every=2", *QUICK,
    ]  # fmt: skip
    cfg = load_config(None, over)
    train_base(cfg)  # a tiny base model trained with the outlier
    clf = next((tiny_workdir / "pretrained").glob("classifier-*"))
    shutil.copytree(clf, wd / "pretrained" / clf.name)
    out = tmp_path / "report"
    opts = BenchOptions(
        methods=("siss", "naive"), agents=("static",), seeds=2, out=str(out), audit=True
    )
    res = run_bench(cfg, opts)
    assert res.plan.instances == [OUTLIER]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    for r in runs:
        assert r["instance"] == OUTLIER
        for k in ("attacked_forget_rate", "benign_forget_rate", "mia_auc"):
            assert 0.0 <= r[k] <= 1.0
        assert r["audit_time"] > 0
        assert [s for s, _ in r["checks"]] == [0, 2, 4]
    for s in res.summaries:
        st = s.stats["attacked_forget_rate"]
        vals = [r["attacked_forget_rate"] for r in runs if r["method"] == s.method]
        assert st.n == 2 and st.mean == pytest.approx(sum(vals) / 2)
    md = (out / "bench.md").read_text()
    assert "attacked forget rate" in md and "MIA AUC (0.5 = chance)" in md
    assert "the memorised outlier" in md
    # --audit changes the cells' digest: a resumed bench without it reruns nothing stale
    again = run_bench(cfg, dataclasses.replace(opts, resume=True))
    assert again.ran == 0


def test_env_final_reward_subtracts_the_attacked_forget_rate(tiny_workdir):
    import numpy as np

    from unlearn.audit import attacked_rates
    from unlearn.envs.unlearning_env import ATTACK_KEY, UnlearningEnv

    over = [f"workdir={tiny_workdir}", "tracking.enabled=false", *QUICK]
    w = 2.0
    cfg = load_config(
        REPO / "configs" / "tiny.yaml", [*over, "env.reward=final", f"env.attack_weight={w}"]
    )
    env = UnlearningEnv(cfg)
    env.reset(seed=0, options={"instance": 5, "seed": 1})
    for _ in range(cfg.env.decisions):
        _, reward, term, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert term
    attacked = info[ATTACK_KEY]
    assert 0.0 <= attacked <= 1.0
    assert attacked == attacked_rates(env.unlearner, benign=False).attacked_forget_rate
    drop = info["base/forget_rate"] - info["eval/forget_rate"]
    fid_rel = (info["eval/fid"] - info["base/fid"]) / abs(info["base/fid"])
    assert reward == pytest.approx(drop - cfg.env.beta * fid_rel - w * attacked)
    assert not math.isnan(info["episode_return"])

    with pytest.raises(ConfigError, match="env.attack_weight"):
        UnlearningEnv(load_config(None, [*TINY, f"workdir={tiny_workdir}", "env.final_eval=false",
                                         "env.attack_weight=1"]))  # fmt: skip
    with pytest.raises(ConfigError, match="env.attack_weight"):
        load_config(None, ["env.attack_weight=-1"])
    with pytest.raises(ConfigError, match="tune.objective"):
        load_config(None, ["tune.objective=robust"])
