"""``unlearn audit`` on text-to-image pipelines (tiny pipelines built from config): paraphrase
leakage, concept inversion (textual inversion of one new token), relearning and membership
inference on (prompt, image) pairs, determinism, and the bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import T2I_TINY, cli, share_pretrained, t2i_cfg, tiny_pipeline

from unlearn.config import ConfigError

AUDIT = [
    "forget.anchor=a handwritten digit",
    "audit.relearn_steps=2",
    "audit.relearn_every=2",
    "audit.relearn_forget_samples=4",
    "audit.relearn_retain_samples=16",
    "audit.relearn_batch_size=4",
    "audit.prompt_samples=4",
    "audit.mia_samples=4",
    "audit.mia_noise=1",
    "audit.inversion_steps=4",
    "audit.adversarial_candidates=3",
    "audit.adversarial_images=4",
]


def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def unlearned_t2i(tmp_path_factory, t2i_pretrained) -> tuple[Path, Path, list[str]]:
    """The session's tiny pipeline, ESD-unlearned by ``unlearn run`` (the run output)."""
    from unlearn.run import run

    wd = share_pretrained(tmp_path_factory.mktemp("t2i-audit"), t2i_pretrained)
    cfg = t2i_cfg(*AUDIT, workdir=wd)
    res = run(cfg, evaluate=False)
    (wd / "defaults.yaml").write_text("{}\n")
    args = ["--config", str(wd / "defaults.yaml"), *_sets(*T2I_TINY, *AUDIT, f"workdir={wd}")]
    return wd, Path(res.model_dir), args


@pytest.mark.slow
def test_pipeline_audit_runs_every_attack_deterministically(unlearned_t2i, tmp_path):
    from unlearn.audit import run_audit

    wd, model_dir, args = unlearned_t2i
    rep = run_audit(t2i_cfg(*AUDIT, workdir=wd), model_dir, out=tmp_path / "a").report.to_dict()
    assert json.loads((tmp_path / "a" / "report.json").read_text()) == rep
    assert rep["kind"] == "t2i" and rep["metric"] == "concept_rate"
    assert rep["attacks"] == ["relearn", "mia", "paraphrase", "inversion", "adversarial"]
    assert {(c["attack"], c["model"]) for c in rep["relearn"]} == {
        (a, m) for a in ("retain", "forget") for m in ("base", "unlearned")
    }
    for c in rep["relearn"]:
        assert c["steps"] == [0, 2] and all(0 <= v <= 1 for v in c["rates"])
    for m in rep["membership"]:
        assert all(0.0 <= m[k] <= 1.0 for k in ("forget_auc", "retain_auc", "unseen_auc"))
    assert [p["model"] for p in rep["paraphrase"]] == ["base", "unlearned"]
    for p in rep["paraphrase"]:
        assert p["prompt_concept_rate"] == rep["start"][p["model"]]
        assert 0 <= p["paraphrase_concept_rate"] <= 1
    for i in rep["inversion"]:
        assert i["prompt"] == "a handwritten digit <inverted>" and i["steps"] == 4
        assert 0 <= i["recovered_concept_rate"] <= 1 and 0 <= i["anchor_concept_rate"] <= 1
        assert (tmp_path / "a" / i["grid"]).is_file()
    # a second audit, by the command, in the default folder (RUN/audit): the same report
    r2 = cli("audit", str(model_dir), *args)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "paraphrase leakage and concept inversion" in r2.stdout
    again = (model_dir.parent / "audit" / "report.json").read_text()
    assert again == (tmp_path / "a" / "report.json").read_text()


def test_inversion_trains_one_new_token_only():
    from unlearn.audit.inversion import TOKEN, invert
    from unlearn.config import AuditConfig
    from unlearn.data import ImageData

    model = tiny_pipeline()
    model.set_prompts(["a handwritten digit seven"])
    emb0 = model.text_encoder.get_input_embeddings().weight.detach().clone()
    unet0 = {k: v.clone() for k, v in model.unet.state_dict().items()}
    vocab = len(model.tokenizer)
    latents = torch.randn(6, model.channels, model.resolution, model.resolution)
    forget = ImageData(latents, torch.ones(6, dtype=torch.long), 2)
    a = AuditConfig(inversion_steps=5, inversion_lr=0.05, relearn_batch_size=3)
    inv, loss = invert(model, forget, "a handwritten digit", a, torch.device("cpu"))
    w = inv.text_encoder.get_input_embeddings().weight
    new = inv.tokenizer.convert_tokens_to_ids(TOKEN)
    assert w.shape[0] == vocab + 1 and new == vocab and loss > 0
    assert torch.equal(w[:vocab], emb0)  # every existing row exactly as it was
    assert not torch.allclose(w[new], emb0.mean(0))  # the new one trained
    # the audited pipeline is untouched: its tokenizer, embeddings, UNet and grad flags
    assert len(model.tokenizer) == vocab
    assert torch.equal(model.text_encoder.get_input_embeddings().weight, emb0)
    assert all(torch.equal(v, unet0[k]) for k, v in model.unet.state_dict().items())
    assert all(p.requires_grad for p in model.unet.parameters())
    ids = inv.token_ids([f"a handwritten digit {TOKEN}"])[0].tolist()
    assert new in ids and inv.tokenizer.unk_token_id not in ids
    # deterministic for a seed
    inv2, loss2 = invert(model, forget, "a handwritten digit", a, torch.device("cpu"))
    assert loss2 == loss
    assert torch.equal(inv2.text_encoder.get_input_embeddings().weight, w)


@pytest.mark.slow
def test_bad_pipeline_audits_fail_before_writing(unlearned_t2i, t2i_pipeline_copy, tmp_path):
    from unlearn.audit import run_audit

    wd, model_dir, args = unlearned_t2i
    cfg = t2i_cfg(*AUDIT, workdir=wd)
    out = tmp_path / "never"
    base = next((wd / "pretrained").glob("t2i-*"))
    no_text = t2i_pipeline_copy
    shutil.rmtree(no_text / "text_encoder")
    cases = [
        (cfg, base, None, "is not an unlearning output"),  # a pipeline, not a run output
        (cfg, model_dir, no_text, "text_encoder"),  # a base without a text encoder
        (t2i_cfg(*AUDIT, "data.resolution=16", workdir=wd), model_dir, None, "data.resolution"),
        (t2i_cfg(*AUDIT, "model.kind=ddpm", workdir=wd), model_dir, None, "model.kind"),
        (
            t2i_cfg(*AUDIT, "forget.paraphrases=[]", "audit.attacks=[paraphrase]", workdir=wd),
            model_dir,
            None,
            "forget.paraphrases",
        ),
    ]
    for c, m, b, fragment in cases:
        with pytest.raises(ConfigError, match=fragment):
            run_audit(c, m, b, out)
        assert not out.exists()
    # concept inversion on a model without a text encoder: one line, exit 2, nothing written
    r = cli(
        "audit", str(model_dir), "--out", str(out),
        *_sets("model.kind=ddpm", "audit.attacks=[inversion]"),
    )  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "audit.attacks" in lines[0] and "text encoder" in lines[0]
    assert not out.exists()
