"""The drivers on image-completion models through the family seam: ``unlearn run`` (the real
console command, with MLflow), ``unlearn eval``'s evaluation, the env (instances are classes),
the bench, the audit and a Tune sweep — on the session's tiny models, 2 steps each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import I2I_TINY, REPO, cli, i2i_cfg, share_pretrained

pytestmark = pytest.mark.slow

ENV = [
    "env.train_instances=[1,3]",
    "env.test_instances=[2]",
    "env.decisions=2",
    "env.steps_per_decision=1",
    "env.proxy_every=1",
    "env.proxy_batch=4",
    "env.final_eval_samples=10",
]
RESULT_KEYS = {"forget_rate", "retain_accuracy", "fid", "forget_fid", "forget_cosine"}


@pytest.fixture(scope="module")
def work(tmp_path_factory, i2i_pretrained) -> Path:
    return share_pretrained(tmp_path_factory.mktemp("i2i-work"), i2i_pretrained)


def test_run_trains_only_the_encoder_and_logs_both_splits(work, tmp_path):
    from mlflow.tracking import MlflowClient

    from unlearn.families import family_of
    from unlearn.models.i2i import load_i2i

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*I2I_TINY, f"workdir={work}", "tracking.enabled=true", f"tracking.uri={uri}"]
    sets += ["model.kind=mae", "tracking.experiment=i2i", "i2i.task=outpaint"]
    sets += ["i2i.mask_ratio=0.5"]
    args = ["run", "--config", str(REPO / "configs" / "i2i_demo.yaml")]
    r = cli(*args, *[a for s in sets for a in ("--set", s)])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next((work / "unlearned").glob("*/result.json")).read_text())
    assert res["status"] == "finished" and res["steps"] == 2
    for side in ("before", "after"):
        assert RESULT_KEYS <= set(res[side]) and res[side]["task"] == "outpaint"
    run_dir = Path(res["model_dir"]).parent
    assert (run_dir / "after.png").is_file() and (run_dir / "before.png").is_file()
    after = load_i2i(res["model_dir"])
    cfg = i2i_cfg("mae", work)
    base = load_i2i(family_of(cfg).base_dir(cfg))
    assert after.task == "outpaint"  # the saved model remembers its mask
    changed = {n for n, p in after.state_dict().items() if not torch.equal(p, base.state_dict()[n])}
    assert changed and all(n.startswith("mae.vit.") for n in changed)
    client = MlflowClient(uri)
    (rec,) = client.search_runs([client.get_experiment_by_name("i2i").experiment_id])
    assert {"eval/forget_rate", "eval/forget_fid", "eval/retain_cosine"} <= set(rec.data.metrics)


@pytest.mark.parametrize("kind", ["inpaint_ddpm", "mae"])
def test_evaluation_scores_forget_and_retain_completions_separately(work, tmp_path, kind):
    from unlearn.families import family_of

    cfg = i2i_cfg(kind, work)
    fam = family_of(cfg)
    a = fam.evaluate_dir(cfg, fam.base_dir(cfg), out=tmp_path / "a")
    b = fam.evaluate_dir(cfg, fam.base_dir(cfg), out=tmp_path / "b")
    assert a.result == b.result  # seeded: the same numbers twice
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["num_samples"] == 16 and m["forget_classes"] == [3]
    assert -1 <= m["forget_cosine"] <= 1 and -1 <= m["retain_cosine"] <= 1
    assert m["fid"] >= 0 and m["forget_fid"] >= 0 and 0 <= m["forget_rate"] <= 1
    assert "3" in m["per_class_accuracy"]
    from PIL import Image

    grid = Image.open(tmp_path / "a" / "completions.png")
    assert grid.width < grid.height  # three columns: masked | completion | ground truth
    assert fam.result_from_dict(a.result.to_dict()) == a.result


def test_env_instances_are_classes(work):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import unlearn.envs  # noqa: F401 (registers the env)

    cfg = i2i_cfg("inpaint_ddpm", work, *ENV, "env.forget_probe=4")  # completions of forget images
    e = gym.make("unlearn/Unlearning-v0", config=cfg)
    try:
        _, info = e.reset(seed=0, options={"instance": 3})
        u = e.unwrapped.unlearner
        assert info["instance"] == 3 and set(u.split.forget.labels.tolist()) == {3}
        done, ret = False, 0.0
        while not done:
            obs, r, term, trunc, info = e.step(np.array([0.7], dtype=np.float32))
            ret += r
            done = term or trunc
        assert np.isfinite(ret) and 0 <= info["eval/forget_rate"] <= 1
        assert np.isfinite(obs).all()
        _, info = e.reset(seed=1, options={"split": "test"})
        assert info["instance"] == 2 and u.eval_data.forget_classes == (2,)
        assert set(u.eval_data.forget.labels.tolist()) == {2}
        check_env(e.unwrapped, skip_render_check=True)
    finally:
        e.close()


def test_bench_on_a_held_out_class_with_a_proxy_retain_set(work, tmp_path):
    from unlearn.bench import BenchOptions, run_bench

    cfg = i2i_cfg("mae", work, *ENV, "forget.retain_source=digits")
    opts = BenchOptions(
        methods=("i2i_encoder", "i2i_random_encoder"),
        agents=("static",),
        seeds=1,
        out=str(tmp_path / "b"),
    )
    res = run_bench(cfg, opts)
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert {(r["method"], r["instance"], r["status"]) for r in runs} == {
        ("i2i_encoder", 2, "finished"),
        ("i2i_random_encoder", 2, "finished"),
    }
    assert all(0 <= r["retain_accuracy"] <= 1 for r in runs)
    assert {s.method for s in res.summaries} == {"i2i_encoder", "i2i_random_encoder"}
    assert "retain accuracy" in (tmp_path / "b" / "bench.md").read_text()


def test_a_bench_without_methods_runs_the_familys_own(work):
    """The bench's default methods serve image and text-to-image models; on an
    image-completion model it picks the image-to-image methods instead of refusing."""
    from unlearn.bench import BenchOptions
    from unlearn.bench.matrix import plan
    from unlearn.methods import METHODS

    p = plan(i2i_cfg("inpaint_ddpm", work, *ENV), BenchOptions(agents=("static",)))
    own = [m for m, cls in METHODS.items() if "inpaint_ddpm" in cls.families]
    assert p.methods == own and all(m.startswith("i2i_") for m in own)


def test_audit_attacks_the_reconstruction_loss(work, tmp_path):
    from unlearn.audit import run_audit
    from unlearn.families import family_of
    from unlearn.models.i2i import save_i2i
    from unlearn.task import make_unlearner

    cfg = i2i_cfg("inpaint_ddpm", work, "audit.relearn_steps=2", "audit.mia_samples=6")
    setup = make_unlearner(cfg)
    setup.unlearner.run()
    model_dir = save_i2i(setup.unlearner.model.cpu(), tmp_path / "unlearned")
    res = run_audit(cfg, model_dir, family_of(cfg).base_dir(cfg), tmp_path / "audit")
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert {m["model"] for m in report["membership"]} == {"base", "unlearned"}
    assert all(0 <= m["forget_auc"] <= 1 for m in report["membership"])
    assert len(report["relearn"]) == 4
    assert res is not None


@pytest.mark.integration
def test_tune_sweeps_the_i2i_methods(work):
    import ray

    from unlearn.tuners import SweepOptions, init_ray, load_space, run_sweep

    cfg = i2i_cfg("mae", work, "tune.cpus_per_trial=1")
    init_ray(num_cpus=2)
    try:
        space = load_space(REPO / "configs" / "tune" / "i2i_methods.yaml")
        res = run_sweep(cfg, space, SweepOptions(search="random", num_samples=2, name="i2i"))
    finally:
        ray.shutdown()
    assert [t.status for t in res.trials] == ["finished", "finished"]
    for t in res.trials:
        assert t.params["method.name"].startswith("i2i_")
        assert 0.0 <= t.forget_rate <= 1.0 and t.fid >= 0.0
