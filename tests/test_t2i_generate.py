"""Data-free erasure (``data.source: generate``): the forget / retain sets sampled from the
frozen pipeline, cached under a key of its weights, prompts, sampler and seed, resumed,
verified, filtered, and what every t2i method trains on."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import t2i_cfg, tiny_pipeline

GEN = ["data.source=generate", "data.generate.per_prompt=2", "data.generate.steps=2"]


def _set(tmp_path, *extra: str, model=None):
    from unlearn.families.t2i.generate import generate_set
    from unlearn.families.t2i.task import load_t2i_task

    cfg = t2i_cfg(*GEN, "data.generate.chunk=1", *extra, workdir=tmp_path)
    model = model if model is not None else tiny_pipeline()
    task = load_t2i_task(cfg, model, need_classifier=False)
    return cfg, task, generate_set(task.model, cfg, task.data.spec)


def _chunks(d):
    return sorted(d.glob("chunk-*.safetensors"))


def test_generated_sets_are_labelled_cached_resumed_and_verified(tmp_path):
    cfg, task, gen = _set(tmp_path)
    spec, split, model = task.data.spec, task.data.split, task.model
    # forget latents are the forget prompts' samples, labelled with their prompt ids
    n_forget = len(set(spec.prompts)) * 2
    assert len(split.forget) == n_forget == gen.n_forget * 2
    assert len(split.retain) == len(spec.retain) * 2
    names = [model.prompts[i] for i in split.forget.labels.tolist()]
    assert names == [p for p in spec.prompts for _ in range(2)]
    assert {model.prompts[i] for i in split.retain.labels.tolist()} == set(spec.retain)
    assert split.forget.images.shape[1:] == (model.channels, model.resolution, model.resolution)
    d = gen.directory
    assert d.parent == tmp_path / "generated" and json.loads((d / "key.json").read_text())
    files = _chunks(d)
    assert len(files) == len(gen.latents) == 6
    # a second load reuses every chunk (nothing rewritten) and gives the same set
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = _set(tmp_path)[2]
    assert torch.equal(again.latents, gen.latents) and torch.equal(again.images, gen.images)
    assert {f: f.stat().st_mtime_ns for f in _chunks(d)} == stamps
    # a killed generation (last chunk missing, one truncated, one with flipped bytes)
    # resumes: the missing and damaged chunks are generated again, equal to the first time
    files[-1].unlink()
    files[0].write_bytes(files[0].read_bytes()[:100])
    raw = bytearray(files[1].read_bytes())
    raw[-5] ^= 0xFF
    files[1].write_bytes(bytes(raw))
    from unlearn.runtime import reporting

    bars = []
    with reporting(lambda task, done, total: bars.append((task, done, total))):
        resumed = _set(tmp_path)[2]
    assert bars[0] == ("generate 6 images", 3, 6) and bars[-1] == ("generate 6 images", 6, 6)
    assert torch.equal(resumed.latents, gen.latents)
    assert len(_chunks(d)) == len(files)
    kept = files[2:-1]
    assert all(f.stat().st_mtime_ns == stamps[f] for f in kept)  # intact chunks reused


def test_a_cache_of_another_pipeline_or_prompts_is_never_reused(tmp_path):
    from unlearn.config import ConfigError

    cache = f"data.generate.cache={tmp_path / 'set'}"
    _, _, gen = _set(tmp_path, cache)
    before = {f.name: f.read_bytes() for f in gen.directory.iterdir()}
    with pytest.raises(ConfigError, match=r"^data\.generate\.cache: .*another pipeline"):
        _set(tmp_path, cache, model=tiny_pipeline(seed=1))
    with pytest.raises(ConfigError, match=r"^data\.generate\.cache: .*other prompts"):
        _set(tmp_path, cache, "forget.paraphrases=[]", "forget.prompts=[the number 7]")
    with pytest.raises(ConfigError, match=r"^data\.generate\.cache: .*other sampler settings"):
        _set(tmp_path, cache, "data.generate.seed=5")
    assert {f.name: f.read_bytes() for f in gen.directory.iterdir()} == before


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["forget.prompts=[]"], "forget.prompts"),
        (["data.generate.per_prompt=0"], "data.generate.per_prompt"),
        (["data.generate.filter=clip"], "data.generate.filter"),
        (["data.generate.filter=sometimes"], "data.generate.filter"),
        (["model.kind=ddpm"], "data.source"),
    ],
)
def test_bad_generate_settings_are_one_line_exit_2(tmp_path, sets, field, capsys, monkeypatch):
    import sys

    from unlearn.cli import main

    args = ["run", "--config", "configs/t2i_demo.yaml", "--set", f"workdir={tmp_path}"]
    for s in [*GEN, *sets]:
        args += ["--set", s]
    monkeypatch.setattr(sys, "argv", ["unlearn", *args])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and field in err[0], err
    assert not (tmp_path / "generated").exists()  # nothing half-written


@pytest.mark.slow
def test_every_t2i_method_unlearns_on_a_generated_set(t2i_workdir):
    """Each t2i method takes steps on the generated sets through the one loop; the filter
    keeps only the images the evaluation classifier says show their prompt."""
    from unlearn.methods import METHODS
    from unlearn.task import make_unlearner

    names = [n for n, m in METHODS.items() if "t2i" in m.families]
    assert {"esd", "uce"} <= set(names)
    # VDU's hinge pushes only while the forget loss is below its margin
    extra = {"vdu": ["method.options.vdu.margin=100"], "uce": ["forget.anchor=a handwritten digit"]}
    for name in names:
        sets = [*GEN, f"method.name={name}", "unlearn.steps=1", *extra.get(name, [])]
        cfg = t2i_cfg(*sets, workdir=t2i_workdir)
        unl = make_unlearner(cfg).unlearner
        base = [p.detach().clone() for p in unl.model.trainable_parameters()]
        unl.step(1)
        after = unl.model.trainable_parameters()
        assert any(not torch.equal(a, b) for a, b in zip(after, base, strict=True)), name
    from unlearn.config import ConfigError
    from unlearn.families.t2i.generate import generate_set

    sets = [*GEN, "data.generate.per_prompt=6"]
    unl = make_unlearner(t2i_cfg(*sets, workdir=t2i_workdir)).unlearner
    gen = generate_set(unl.model, t2i_cfg(*sets, workdir=t2i_workdir), unl.eval_data.spec)
    probs, _ = unl.classifier.predict(gen.images[gen.prompt_index < gen.n_forget])
    sevens = int((probs.argmax(1) == 7).sum())
    filtered = t2i_cfg(*sets, "data.generate.filter=measure", workdir=t2i_workdir)
    if sevens == 0:
        with pytest.raises(ConfigError, match="^data.generate.filter"):
            make_unlearner(filtered)
    else:
        assert len(make_unlearner(filtered).unlearner.split.forget) == sevens
