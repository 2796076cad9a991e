from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from unlearn.config import ConfigError
from unlearn.models import load_model
from unlearn.pretrain import cache_dirs, load_pretrained, pretrain, train_base


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_pretrain_caches_and_resumes_identically(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="run `unlearn pretrain"):
        load_pretrained(tiny_cfg)

    def stop_at_15(task, done, total):
        if task == "base model" and done == 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_base(tiny_cfg, stop_at_15)
    model_dir, _ = cache_dirs(tiny_cfg)
    assert not (model_dir / "unlearn.json").exists(), "an interrupted run left a model behind"
    resumed_from = []
    res = pretrain(tiny_cfg, lambda t, d, n: resumed_from.append(d) if t == "base model" else None)
    assert resumed_from[0] == 11, "did not resume from the step-10 checkpoint"
    assert res.model_dir == model_dir and 0 <= res.classifier_accuracy <= 1

    fresh = dataclasses.replace(tiny_cfg, workdir=str(tmp_path / "other"))
    straight = train_base(fresh)
    a, b = load_model(res.model_dir), load_model(straight)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)

    calls = []
    again = pretrain(tiny_cfg, lambda *a: calls.append(a))
    assert again.model_dir == res.model_dir and not calls, "cached result was retrained"
    model, clf, _ = load_pretrained(tiny_cfg)
    assert model.resolution == 8 and clf.num_classes == 10


def test_shipped_demo_assets_are_matched_by_key():
    from unlearn.config import load_config
    from unlearn.pretrain import shipped_dirs

    demo = Path(__file__).resolve().parents[1] / "configs/demo.yaml"
    model, clf = shipped_dirs(load_config(demo))
    assert model is not None and clf is not None  # the demo starts without training
    # classifier settings do not change the base model: it is still shipped, the classifier not
    model2, clf2 = shipped_dirs(load_config(demo, ["pretrain.classifier_label_smoothing=0.1"]))
    assert model2 == model and clf2 is None
    # anything that shapes the base model does
    assert shipped_dirs(load_config(demo, ["pretrain.lr=0.002"])) == (None, clf)
