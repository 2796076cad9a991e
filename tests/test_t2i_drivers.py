"""The drivers on text-to-image pipelines: t2i search spaces validated and swept with real
Ray Tune, and the t2i bad inputs through the console command (exit 2, one line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO, T2I_TINY, cli_here, t2i_cfg, tiny_pipeline

T2I_SPACES = sorted((REPO / "configs" / "tune").glob("t2i_*.yaml"))


def test_t2i_search_spaces_validate_against_the_demo_config():
    from unlearn.config import load_config
    from unlearn.tuners import load_space
    from unlearn.tuners.space import validate_space

    demo = load_config(REPO / "configs" / "t2i_demo.yaml")
    assert len(T2I_SPACES) >= 3
    for f in T2I_SPACES:
        validate_space(load_space(f), demo)


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory) -> Path:
    from unlearn.models.t2i import save_t2i

    out = tmp_path_factory.mktemp("t2i-pipe") / "pipe"
    save_t2i(tiny_pipeline(), out)
    return out


def _sets(wd: Path, pipe: Path, *extra: str) -> list[str]:
    empty = wd / "defaults.yaml"
    empty.write_text("{}\n")
    sets = [*T2I_TINY, f"workdir={wd}", f"model.pretrained={pipe}", *extra]
    return ["--config", str(empty), *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["forget.anchor=a purple digit"], "forget.anchor: 'a purple digit' has words"),
        (["method.name=vdu", "forget.prompts=[]"], "forget.prompts: [] is not allowed for"),
        (["env.test_instances=[2,7]"], "env.test_instances: 7 is not allowed; it is also in"),
    ],
)
@pytest.mark.slow
def test_t2i_bad_input_exits_2_with_one_line(tmp_path, saved_pipeline, extra, fragment):
    r = cli_here("run", *_sets(tmp_path, saved_pipeline, *extra))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert fragment in lines[0]
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("unlearned*"))


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (  # an instance the pipeline cannot measure
            [
                "env.instances={curly: {concept: curly, prompts: [a handwritten digit]}}",
                "env.test_instances=[2, curly]",
            ],
            "env.instances.curly: forget.concept: 'curly' names no digit",
        ),
        (  # an instance in both sets
            [
                "env.instances={thin: {concept: thin, prompts: [a digit with thin strokes]}}",
                "env.train_instances=[1, thin]",
                "env.test_instances=[thin]",
            ],
            "env.test_instances: 'thin' is not allowed; it is also in",
        ),
        (["env.test_instances=[2, thin]"], "'thin' is not allowed; it is not a class"),
    ],
)
@pytest.mark.slow
def test_t2i_bench_bad_instances_exit_2(t2i_workdir, tmp_path, extra, fragment):
    empty = tmp_path / "defaults.yaml"
    empty.write_text("{}\n")
    sets = [*T2I_TINY, f"workdir={t2i_workdir}", *extra]
    out = tmp_path / "report"
    args = ["--config", str(empty), *[a for s in sets for a in ("--set", s)], "--out", str(out)]
    r = cli_here("bench", "--rows", "esd:static", *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert fragment in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_t2i_search_parameter_the_method_does_not_take_exits_2(tmp_path, saved_pipeline):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "fixed": {"method.name": "esd"},
                "params": {"method.options.margin": {"float": [0.5, 2.0]}},
            }
        )
    )
    r = cli_here("tune", "--space", str(space), *_sets(tmp_path, saved_pipeline))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "method.options.margin" in lines[0] and "eta" in lines[0]
    assert not (tmp_path / "tune").exists()


@pytest.mark.integration
def test_tune_sweeps_t2i_methods_lora_rank_and_agents(t2i_workdir, tmp_path):
    import ray

    from unlearn.tuners import SweepOptions, init_ray, load_space, run_sweep

    cfg = t2i_cfg("unlearn.steps=2", "tune.cpus_per_trial=1", workdir=t2i_workdir)
    init_ray(num_cpus=2)
    try:
        space = load_space(REPO / "configs" / "tune" / "t2i_methods.yaml")
        res = run_sweep(cfg, space, SweepOptions(search="random", num_samples=2, name="t2i"))
    finally:
        ray.shutdown()
    assert [t.status for t in res.trials] == ["finished", "finished"]
    for t in res.trials:
        assert t.params["method.name"] in ("esd", "fdiv", "constrained", "vdu")
        assert t.params["model.lora_rank"] in (2, 4, 8)
        assert 0.0 <= t.forget_rate <= 1.0 and t.fid >= 0.0
        # a pipeline's other table figures reach the trial and the sweep's table
        assert set(t.metrics) == {"paraphrase_concept_rate", "retain_accuracy"}
        assert 0.0 <= t.metrics["retain_accuracy"] <= 1.0
    rows = (res.path / "report" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "model.lora_rank" in rows[0]
    head = rows[0].split(",")
    assert head.index("eval/fid") + 1 == head.index("eval/paraphrase_concept_rate")
    assert "eval/retain_accuracy" in head
