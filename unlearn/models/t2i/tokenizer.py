"""A word-level tokenizer built offline: a ``tokenizers`` WordLevel model inside transformers'
``PreTrainedTokenizerFast``, which ``StableDiffusionPipeline`` uses like CLIP's tokenizer
(padding to ``model_max_length``, save / load with the pipeline)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"


def build_tokenizer(words: Sequence[str], max_length: int):
    """A ``PreTrainedTokenizerFast`` over ``words`` (lower-cased, split on whitespace and
    punctuation), wrapping each prompt as ``[BOS] ... [EOS]`` and padding with ``[PAD]``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate((PAD, UNK, BOS, EOS))}
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
    )


def unknown_words(tokenizer, texts: Iterable[str]) -> list[str]:
    """Words of ``texts`` the tokenizer maps to its unknown token (sorted, unique)."""
    unk = tokenizer.unk_token_id
    bad: set[str] = set()
    for text in texts:
        for word in text.split():
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            if unk is not None and unk in ids:
                bad.add(word)
    return sorted(bad)


def too_long(tokenizer, texts: Iterable[str]) -> list[str]:
    """Texts whose tokens (with [BOS] / [EOS]) exceed the tokenizer's ``model_max_length``."""
    n = tokenizer.model_max_length
    return [t for t in texts if len(tokenizer(t)["input_ids"]) > n]
