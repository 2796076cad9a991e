"""A pipeline whose tokenizer is a transformers ``CLIPTokenizer`` (byte-pair encoding from a
vocab.json and merges.txt, as Stable Diffusion ships it; built here from a handful of words,
nothing downloaded): load, erase, evaluate, save, plain-diffusers reload; long prompts are
truncated as diffusers does with one warning; unknown words exit 2 with one line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from helpers import t2i_cfg

WORDS = "a handwritten digit seven the number 7 one two picture of".split()
LONG = "a handwritten digit seven the number seven a picture of the digit seven two one"


def clip_tokenizer(out: Path, words: list[str], max_length: int):
    """A ``CLIPTokenizer`` whose BPE merges spell each of ``words`` as one token (and whose
    vocabulary holds their letters, so other words of those letters split into pieces)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(tok: str) -> None:
        vocab.setdefault(tok, len(vocab))

    for w in words:
        parts = [*w[:-1], w[-1] + "</w>"]
        for p in parts:
            add(p)
        cur = parts[0]
        for nxt in parts[1:]:
            if f"{cur} {nxt}" not in merges:
                merges.append(f"{cur} {nxt}")
            cur += nxt
            add(cur)
    add("<|startoftext|>")
    add("<|endoftext|>")
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(
        str(out / "vocab.json"), str(out / "merges.txt"), model_max_length=max_length
    )
    for w in words:  # each word is one token of the vocabulary
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    return tok


@pytest.fixture(scope="module")
def clip_pipeline(t2i_pretrained, tmp_path_factory) -> Path:
    """The session's tiny pipeline with its word-level tokenizer replaced by a CLIPTokenizer
    (the text encoder's embedding table resized to it), saved as a pipeline directory."""
    from unlearn.models.t2i import load_t2i

    (src,) = (t2i_pretrained / "pretrained").glob("t2i-*")
    model = load_t2i(src)
    tmp = tmp_path_factory.mktemp("clip-tok")
    tok = clip_tokenizer(tmp / "bpe", WORDS, model.tokenizer.model_max_length)
    te = model.text_encoder
    te.resize_token_embeddings(len(tok))
    te.config.update(
        {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        | {"pad_token_id": tok.pad_token_id}
    )
    model.tokenizer = tok
    model.pipeline().save_pretrained(str(tmp / "pipeline"), safe_serialization=True)
    return tmp / "pipeline"


@pytest.mark.slow
def test_a_clip_tokenizer_pipeline_erases_evaluates_saves_and_reloads(
    clip_pipeline, t2i_workdir, caplog
):
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from unlearn.run import run

    sets = [f"model.pretrained={clip_pipeline}", f"forget.paraphrases=[{LONG}]"]
    cfg = t2i_cfg(*sets, "unlearn.steps=2", workdir=t2i_workdir)
    with caplog.at_level(logging.WARNING):
        res = run(cfg)
    truncated = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(truncated) == 1 and LONG in truncated[0].getMessage()
    assert 0 <= res.after.concept_rate <= 1 and res.before is not None
    out = StableDiffusionPipeline.from_pretrained(res.model_dir)
    assert isinstance(out.tokenizer, CLIPTokenizer)
    ids = out.tokenizer(LONG, padding="max_length", truncation=True).input_ids
    assert len(ids) == out.tokenizer.model_max_length  # cut as the pipeline cuts it
    base = StableDiffusionPipeline.from_pretrained(str(clip_pipeline))
    moved = [
        not torch.equal(a, b)
        for a, b in zip(out.unet.parameters(), base.unet.parameters(), strict=True)
    ]
    assert any(moved)  # the erasure trained the UNet it saved
    img = out("a handwritten digit seven", num_inference_steps=2, height=8, width=8).images
    assert len(img) == 1


def test_words_outside_a_clip_vocabulary_exit_2_with_one_line(
    clip_pipeline, tmp_path, capsys, monkeypatch
):
    from unlearn.cli import main

    args = ["run", "--config", "configs/t2i_demo.yaml", "--set", f"workdir={tmp_path}"]
    for s in (f"model.pretrained={clip_pipeline}", "forget.prompts=[a zebra digit]"):
        args += ["--set", s]
    monkeypatch.setattr(sys, "argv", ["unlearn", *args])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert "forget.prompts" in err[0] and "zebra" in err[0]
