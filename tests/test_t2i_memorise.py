"""Memorised-prompt unlearning on the shipped text-to-image demo pipeline
(``configs/t2i_memorise.yaml``): the config names the pipeline's memorised caption and image,
``unlearn run`` forgets it with SISS and writes a pipeline diffusers loads, and ``unlearn
audit`` relearns it and runs membership inference on the memorised image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "t2i_memorise.yaml"
TINY = [
    "unlearn.steps=2",
    "unlearn.batch_size=4",
    "t2i.samples_per_prompt=2",
    "audit.attacks=[relearn,mia]",
    "audit.relearn_steps=2",
    "audit.relearn_every=2",
    "audit.relearn_retain_samples=16",
    "audit.relearn_batch_size=4",
    "audit.prompt_samples=4",
    "audit.mia_samples=4",
    "audit.mia_noise=1",
]


@pytest.mark.slow
def test_config_forgets_the_shipped_pipelines_memorised_image():
    from unlearn.config import load_config
    from unlearn.families.t2i.pretrain import memorised_image
    from unlearn.families.t2i.task import load_t2i_task
    from unlearn.pretrain import shipped_dirs

    cfg = load_config(CONFIG)
    mem, f = cfg.t2i.memorise, cfg.forget
    assert shipped_dirs(cfg)[0] is not None  # the shipped pipeline is its base model
    assert (f.caption, list(f.caption_images)) == (mem.caption, [mem.index])
    assert f.outlier.radius == mem.radius  # one radius counts a reproduction everywhere
    task = load_t2i_task(cfg)
    memo = task.data.spec.target[1]
    # the index means the image the pretraining duplicated, and nothing else is a copy of it
    assert torch.equal(memo.images, memorised_image(cfg)[None])
    assert len(task.data.split.forget) == 1 and memo.labels == (2,)
    assert task.data.spec.prompts == (mem.caption,)
    assert len(task.data.spec.retain) == 10  # every digit keeps its images


@pytest.mark.slow
def test_memorised_caption_run_and_audit_on_the_shipped_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from unlearn.audit import run_audit
    from unlearn.config import load_config
    from unlearn.run import run

    cfg = load_config(CONFIG, [*TINY, f"workdir={tmp_path}"])
    res = run(cfg).to_dict()
    for side in ("before", "after"):
        assert {"concept_rate", "retain_accuracy", "fid"} <= res[side].keys()
        assert 0.0 <= res[side]["concept_rate"] <= 1.0
    # the shipped pipeline reproduces its memorised image for the caption
    assert res["before"]["concept_rate"] == 1.0
    model_dir = Path(res["model_dir"])
    pipe = StableDiffusionPipeline.from_pretrained(model_dir)
    assert pipe.unet.config.sample_size == 8

    rep = run_audit(cfg, model_dir).report.to_dict()
    assert json.loads((model_dir.parent / "audit" / "report.json").read_text()) == rep
    assert rep["attacks"] == ["relearn", "mia"] and rep["metric"] == "concept_rate"
    base_forget = [c for c in rep["relearn"] if c["model"] == "base" and c["attack"] == "forget"]
    assert base_forget[0]["rates"][0] == 1.0  # the caption reproduces the image before attacks
    members = {m["model"]: m for m in rep["membership"]}
    assert members.keys() == {"base", "unlearned"}
    # the memorised image is easier to denoise under its caption than held-out 2s
    assert members["base"]["forget_auc"] > 0.5
