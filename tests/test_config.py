from __future__ import annotations

from pathlib import Path

import pytest

from unlearn.config import Config, ConfigError, load_config, with_overrides

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(None, ["method.lam=0.25", "forget.classes=[1, 2]", f"workdir={tmp_path}"])
    assert isinstance(cfg, Config)
    assert cfg.method.lam == 0.25
    assert cfg.forget.classes == (1, 2)
    assert Path(cfg.workdir).is_absolute()


def test_relative_workdir_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["workdir=here"])
    assert cfg.workdir == str(tmp_path / "here")


@pytest.mark.parametrize(
    "name", ["demo.yaml", "mnist.yaml", "tiny.yaml", "t2i_demo.yaml", "t2i_instances.yaml"]
)
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.data.resolution >= 8


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "t2i_demo.yaml"])
def test_embedded_configs_match_repo_copies(name):
    import unlearn.cli

    embedded = unlearn.cli.default_config_path().parent / name
    assert embedded.read_text() == (REPO / "configs" / name).read_text()


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("method.lam=1.5", "method.lam: 1.5 is out of range; expected a value in [0.0, 1.0]"),
        ("data.name=imagenet", "data.name: 'imagenet' is not allowed; expected one of mnist"),
        ("data.resolutoin=16", "data.resolutoin: unknown key; allowed keys: name, resolution"),
        ("unlearn.steps=abc", "unlearn.steps: expected an integer, got 'abc'"),
        ("model.attention=3", "model.attention: expected true or false"),
        ("nosuch.field=1", "nosuch: unknown key"),
    ],
)
def test_invalid_values_name_field_value_and_range(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_digest_is_stable_and_sensitive():
    a = load_config(None, ["workdir=/tmp/x"])
    b = with_overrides(a, ["model.layers_per_block=2"])
    assert a.digest("model") == load_config(None, ["workdir=/tmp/y"]).digest("model")
    assert a.digest("model") != b.digest("model")


def test_extends_merges_the_file_over_its_base_and_refuses_a_cycle(tmp_path):
    cfg = load_config(REPO / "configs" / "t2i_instances.yaml")
    base = load_config(REPO / "configs" / "t2i_demo.yaml")
    assert cfg.name == "t2i-instances" and cfg.model == base.model and cfg.method == base.method
    # a section the file gives merges key by key: the base's other env fields stay
    assert cfg.env.decisions == base.env.decisions
    assert cfg.env.test_instances == (2, 8, "thin", "right", "secret")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: 'a.yaml' in .* the files extend each other"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: [base.yaml, 7]\n")
    with pytest.raises(ConfigError, match=r"extends: 7 .* expected a YAML file path"):
        load_config(tmp_path / "c.yaml")
    # a list merges in order, the file last: the SDXL demo with the shared concept sets
    sdxl = load_config(REPO / "configs" / "sdxl_instances.yaml")
    sdxl_base = load_config(REPO / "configs" / "sdxl_demo.yaml")
    assert sdxl.model == sdxl_base.model and sdxl.name == "sdxl-instances"
    assert sdxl.env.instances == cfg.env.instances and sdxl.env.train_instances == (
        1,
        3,
        5,
        "thick",
        "left",
    )
    (tmp_path / "d.yaml").write_text("extends: nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        load_config(tmp_path / "d.yaml")


NAMED = "env.instances={thick: {concept: thick, prompts: [a digit with thick strokes]}}"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            ["env.test_instances=[2, thin]"],
            "env.test_instances: 'thin' is not allowed; it is not a",
        ),
        ([NAMED, "env.train_instances=[1, thick]", "env.test_instances=[thick]"], "also in"),
        ([NAMED, "env.test_instances=[2, thick, thick]"], "'thick' is listed twice"),
        (["env.instances={'4': {classes: [4]}}"], "env.instances: '4' is not allowed as a name"),
        (["env.instances={x: {concpt: a}}"], "env.instances.x.concpt: unknown key"),
        (["env.instances={x: {}}"], "env.instances.x: {} is not allowed"),
        (["env.instances={x: {classes: [a]}}"], "env.instances.x.classes[0]: expected an integer"),
        (["env.test_instances=[2.5]"], "env.test_instances: 2.5 is not allowed"),
    ],
)
def test_bad_instances_name_the_field(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert fragment in str(e.value)


def test_named_and_numbered_instances_mix():
    cfg = load_config(None, [NAMED, "env.test_instances=[2, thick, '8']"])
    assert cfg.env.test_instances == (2, "thick", 8)
