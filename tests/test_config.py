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


@pytest.mark.parametrize("name", ["demo.yaml", "mnist.yaml", "tiny.yaml", "t2i_demo.yaml"])
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
