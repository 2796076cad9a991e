"""Captions for digit images: templates naming the digit plus attributes measured from the
image itself (stroke thickness, slant).

The text-to-image demo trains on these captions; evaluation measures the same attributes on
generated images, so "thick" prompts can be checked without a second classifier. Every word
any template can produce is in :data:`VOCABULARY`, from which the word-level tokenizer is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: templates of the training captions; {w} is the digit's word, {n} its numeral
TEMPLATES = (
    "a handwritten digit {w}",
    "the number {n}",
    "the digit {w}",
    "a picture of a {w}",
    "handwritten {n}",
    "a {w} written by hand",
    "the numeral {n}",
    "an image of the number {w}",
)
#: captions of an image without naming its digit (the anchor concept)
GENERIC = ("a handwritten digit", "a digit", "a number written by hand")
ATTRIBUTE_PHRASES = {
    "thick": "with thick strokes",
    "thin": "with thin strokes",
    "left": "slanted left",
    "right": "slanted right",
}
#: probability that an image's extreme attribute is named in its caption
ATTRIBUTE_RATE = 0.7
#: probability that a caption omits the digit (a generic caption)
GENERIC_RATE = 0.1

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def _vocabulary() -> tuple[str, ...]:
    words: list[str] = []
    texts = [*TEMPLATES, *GENERIC, *ATTRIBUTE_PHRASES.values()]
    for text in texts:
        for w in text.replace("{w}", "").replace("{n}", "").split():
            if w not in words:
                words.append(w)
    words += list(DIGIT_WORDS) + [str(d) for d in range(10)]
    return tuple(words)


VOCABULARY = _vocabulary()


def vocabulary(extra: str = "") -> tuple[str, ...]:
    """:data:`VOCABULARY` plus the new words of ``extra`` (a memorised caption)."""
    new = [w for w in dict.fromkeys(extra.split()) if w not in VOCABULARY and w not in SPECIALS]
    return (*VOCABULARY, *new)


# -- measured attributes -----------------------------------------------------------------------
def ink(images: torch.Tensor) -> torch.Tensor:
    """Binary ink masks (N, R, R) of images in [-1, 1] (first channel, threshold at mid-grey)."""
    return (images[:, 0] > 0).float()


def thickness(images: torch.Tensor) -> torch.Tensor:
    """Stroke width in pixels: 2·area / perimeter of the ink (a stroke of width w and
    length L has area ≈ wL and perimeter ≈ 2L), per image."""
    b = ink(images)
    pad = torch.nn.functional.pad(b, (1, 1, 1, 1))
    perim = (pad[:, 1:, :] - pad[:, :-1, :]).abs().sum((1, 2)) + (
        pad[:, :, 1:] - pad[:, :, :-1]
    ).abs().sum((1, 2))
    return 2 * b.sum((1, 2)) / perim.clamp(min=1.0)


def slant(images: torch.Tensor) -> torch.Tensor:
    """Shear of the ink, cov(x, y) / var(y) with y pointing up: > 0 leans right, per image."""
    b = ink(images)
    r = b.shape[-1]
    ys = -torch.arange(r, dtype=torch.float32).view(1, r, 1).expand_as(b)
    xs = torch.arange(r, dtype=torch.float32).view(1, 1, r).expand_as(b)
    m = b.sum((1, 2)).clamp(min=1.0)
    my, mx = (b * ys).sum((1, 2)) / m, (b * xs).sum((1, 2)) / m
    cov = (b * (xs - mx.view(-1, 1, 1)) * (ys - my.view(-1, 1, 1))).sum((1, 2)) / m
    var = (b * (ys - my.view(-1, 1, 1)).pow(2)).sum((1, 2)) / m
    return cov / var.clamp(min=1e-6)


@dataclass(frozen=True)
class AttributeThresholds:
    """Where "thick" / "thin" and "slanted left" / "right" begin, from the training images
    (thickness tertiles, slant quartiles)."""

    thin: float
    thick: float
    left: float
    right: float

    @classmethod
    def fit(cls, images: torch.Tensor) -> AttributeThresholds:
        th, sl = thickness(images), slant(images)
        q = torch.tensor([1 / 3, 2 / 3])
        t_lo, t_hi = torch.quantile(th, q).tolist()
        s_lo, s_hi = torch.quantile(sl, torch.tensor([0.25, 0.75])).tolist()
        return cls(thin=t_lo, thick=t_hi, left=s_lo, right=s_hi)

    def to_dict(self) -> dict[str, float]:
        return {"thin": self.thin, "thick": self.thick, "left": self.left, "right": self.right}

    def has(self, name: str, images: torch.Tensor) -> torch.Tensor:
        """Boolean per image: does it show attribute ``name`` (thick, thin, left, right)?"""
        if name == "thick":
            return thickness(images) > self.thick
        if name == "thin":
            return thickness(images) < self.thin
        if name == "left":
            return slant(images) < self.left
        if name == "right":
            return slant(images) > self.right
        raise KeyError(name)

    def attributes(self, images: torch.Tensor) -> list[list[str]]:
        """The extreme attributes of each image, e.g. ``[["thick", "left"], [], ...]``."""
        flags = {a: self.has(a, images) for a in ATTRIBUTE_PHRASES}
        return [[a for a in ATTRIBUTE_PHRASES if bool(flags[a][i])] for i in range(len(images))]


# -- captions ----------------------------------------------------------------------------------
def digit_prompt(template: str, digit: int) -> str:
    return template.format(w=DIGIT_WORDS[digit], n=str(digit))


def caption(digit: int, attributes: list[str], g: torch.Generator, cond_drop: float = 0.0) -> str:
    """One random training caption of an image of ``digit`` with measured ``attributes``.

    With probability ``cond_drop`` the caption is empty (classifier-free guidance).
    """
    u = torch.rand(3 + len(attributes), generator=g).tolist()
    if u[0] < cond_drop:
        return ""
    if u[1] < GENERIC_RATE:
        base = GENERIC[int(u[2] * len(GENERIC)) % len(GENERIC)]
    else:
        base = digit_prompt(TEMPLATES[int(u[2] * len(TEMPLATES)) % len(TEMPLATES)], digit)
    named = [
        ATTRIBUTE_PHRASES[a] for a, v in zip(attributes, u[3:], strict=True) if v < ATTRIBUTE_RATE
    ]
    return " ".join([base, *named])


def captions(
    labels: torch.Tensor, attributes: list[list[str]], g: torch.Generator, cond_drop: float
) -> list[str]:
    """Captions for a batch (labels and their images' attributes), drawn from ``g``."""
    return [
        caption(int(y), a, g, cond_drop) for y, a in zip(labels.tolist(), attributes, strict=True)
    ]


def concept_of(text: str) -> tuple[str, int | str] | None:
    """What a concept phrase names: ``("digit", 7)`` for "seven" / "7", ``("attribute",
    "thick")`` for "thick" / "with thick strokes", None when neither."""
    words = text.lower().split()
    for d, w in enumerate(DIGIT_WORDS):
        if w in words or str(d) in words:
            return ("digit", d)
    for a, phrase in ATTRIBUTE_PHRASES.items():
        if a in words or phrase in text.lower():
            return ("attribute", a)
    return None
