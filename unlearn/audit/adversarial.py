"""Adversarial-prompt attack on a text-to-image pipeline, in the style of UnlearnDiffAtk
(Zhang et al., ECCV 2024): the unlearned model is its own judge.

For each forget prompt p the attack appends ``audit.adversarial_tokens`` words from the
tokenizer's vocabulary and chooses them to minimise the model's own denoising loss on
images of the concept, ``mean ‖ε_θ(x_t, t, p + words) − ε‖²`` over a fixed set of
(image, t, ε) draws: a prompt under which the model still predicts the concept images'
noise well is one under which it can still draw them. Then it generates with the chosen
prompt and measures the concept rate there (the attack's success rate).

The search is greedy coordinate descent over the vocabulary: in each of
``audit.adversarial_rounds`` rounds, each position in turn takes the word whose prompt has
the lowest loss, every other position held fixed. Every candidate is scored exactly, with
the same draws, so the result depends only on the seed; with ``audit.adversarial_candidates``
= 0 every word of the vocabulary is a candidate at every position (the demo tokenizer has a
few dozen words), otherwise a seeded subset of that many.

The concept images are the forget data the audit already has (the training latents of the
concept, a seeded subset of ``audit.adversarial_images``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.config import AuditConfig, ConfigError
from unlearn.data import ImageData


@dataclass(frozen=True)
class AdversarialPrompt:
    """One forget prompt attacked on one model.

    Args:
        model: ``base`` or ``unlearned``.
        prompt: the forget prompt.
        adversarial: the prompt with the chosen words appended.
        loss_before, loss_after: the model's denoising loss on the concept images under the
            prompt and under the adversarial prompt.
        rate_before, rate_after: the concept rate of images generated from each (pre-attack
            and post-attack; the post-attack rate is the attack's success rate).
    """

    model: str
    prompt: str
    adversarial: str
    loss_before: float
    loss_after: float
    rate_before: float
    rate_after: float

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "adversarial_prompt": self.adversarial,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "pre_attack_concept_rate": self.rate_before,
            "post_attack_concept_rate": self.rate_after,
        }


def vocabulary(tokenizer) -> list[str]:
    """The tokenizer's tokens that are a word of their own (decoded, they tokenize back to
    themselves; special tokens excluded), in token-id order."""
    special = set(tokenizer.all_special_ids)
    words: dict[str, None] = {}
    for i in sorted(tokenizer.get_vocab().values()):
        if i in special:
            continue
        word = tokenizer.decode([i]).strip()
        if word and tokenizer(word, add_special_tokens=False)["input_ids"] == [i]:
            words.setdefault(word)
    return list(words)


def check_adversarial(model, prompts: tuple[str, ...], a: AuditConfig) -> None:
    """ConfigError unless the model has a tokenizer and every forget prompt has room for the
    attack's words within the tokenizer's length."""
    tok = getattr(model, "tokenizer", None)
    if tok is None or getattr(model, "text_encoder", None) is None:
        raise ConfigError(
            "audit.attacks: 'adversarial' needs a model with a text encoder and tokenizer"
        )
    if not prompts:
        raise ConfigError("forget.prompts: the adversarial attack needs at least one prompt")
    room = tok.model_max_length
    for p in prompts:
        n = len(tok(p)["input_ids"])
        if n + a.adversarial_tokens > room:
            raise ConfigError(
                f"audit.adversarial_tokens: {a.adversarial_tokens} is not allowed; forget prompt "
                f"{p!r} has {n} tokens of the tokenizer's {room}: expected at most {room - n}"
            )
    if not vocabulary(tok):
        raise ConfigError("audit.attacks: 'adversarial' found no words in the tokenizer")


def concept_draws(model, forget: ImageData, a: AuditConfig, device) -> tuple[torch.Tensor, ...]:
    """Fixed (x_t, t, ε) draws on a seeded subset of the concept's latents."""
    g = torch.Generator().manual_seed(a.seed * 15_485_863 + 29)
    n = min(a.adversarial_images, len(forget))
    if n == 0:
        raise ConfigError("audit: the adversarial attack has no images of the concept")
    idx = torch.randperm(len(forget), generator=g)[:n]
    x0 = forget.images[idx].repeat_interleave(a.adversarial_noise, 0)
    t = torch.randint(0, model.num_timesteps, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x0, t, eps = x0.to(device), t.to(device), eps.to(device)
    return model.add_noise(x0, t, eps), t, eps


@torch.no_grad()
def prompt_losses(model, prompts: list[str], draws, chunk: int = 1024) -> torch.Tensor:
    """The denoising loss of each prompt on the fixed draws (one number per prompt)."""
    x_t, t, eps = draws
    n = len(x_t)
    emb = model.encode_cond(prompts).to(x_t.dtype)
    out = torch.empty(len(prompts))
    per = max(1, chunk // n)  # prompts per UNet forward
    for i in range(0, len(prompts), per):
        e = emb[i : i + per]
        m = len(e)
        pred = model.denoise(x_t.repeat(m, 1, 1, 1), t.repeat(m), e.repeat_interleave(n, 0))
        err = (pred - eps.repeat(m, 1, 1, 1)).pow(2).flatten(1).mean(1)
        out[i : i + m] = err.view(m, n).mean(1).cpu()
    return out


def _join(prompt: str, words: list[str]) -> str:
    return " ".join([prompt, *words])


def search(model, prompt: str, draws, a: AuditConfig) -> tuple[str, float, float]:
    """Greedy coordinate search for the words appended to ``prompt``; returns the
    adversarial prompt, the loss of ``prompt`` and the loss of the adversarial prompt."""
    vocab = vocabulary(model.tokenizer)
    g = torch.Generator().manual_seed(a.seed * 7_927 + 3)
    base = float(prompt_losses(model, [prompt], draws)[0])
    words = [vocab[0]] * a.adversarial_tokens
    best = float("inf")
    for _ in range(a.adversarial_rounds):
        for j in range(a.adversarial_tokens):
            cands = vocab
            if 0 < a.adversarial_candidates < len(vocab):
                pick = torch.randperm(len(vocab), generator=g)[: a.adversarial_candidates]
                cands = [vocab[int(i)] for i in sorted(pick.tolist())]
            if words[j] not in cands:  # the current word stays a candidate: never worse
                cands = [words[j], *cands]
            texts = [_join(prompt, [*words[:j], w, *words[j + 1 :]]) for w in cands]
            losses = prompt_losses(model, texts, draws)
            k = int(torch.argmin(losses))  # first minimum: ties go to the lowest id
            words[j], best = cands[k], float(losses[k])
    return _join(prompt, words), base, best


def attack_prompts(
    name: str,
    model,
    meter,
    forget: ImageData,
    a: AuditConfig,
    device,
    before: list[float] | None = None,
) -> tuple[list[AdversarialPrompt], torch.Tensor]:
    """Attack every forget prompt of ``meter`` on ``model``; the per-prompt results and the
    samples of the adversarial prompts (``audit.prompt_samples`` per prompt, in order).
    ``before``: the pre-attack rate of each prompt when already measured."""
    prompts = list(meter.prompts)
    was = model.training
    model.eval()
    draws = concept_draws(model, forget, a, device)
    found = [search(model, p, draws, a) for p in prompts]
    if before is None:
        before, _ = meter.per_prompt(model)
    after, samples = meter.with_prompts(tuple(f[0] for f in found)).per_prompt(model)
    model.train(was)
    rows = [
        AdversarialPrompt(name, p, adv, lb, la, rb, ra)
        for p, (adv, lb, la), rb, ra in zip(prompts, found, before, after, strict=True)
    ]
    return rows, samples
