"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024), a closed-form edit of the
UNet's cross-attention key and value projections; no optimiser, no gradient.

Each cross-attention projection W (``attn2.to_k``, ``attn2.to_v``) reads the text encoder's
token embeddings c. UCE solves, per W, the ridge regression

    min_W'  λ·Σ_e ‖W' c_e − W c_a‖² + (1−λ)·Σ_p ‖W' c_p − W c_p‖² + ρ‖W' − W‖²_F

whose minimiser is the closed form

    W' = (λ Σ_e W c_a c_eᵀ + (1−λ) Σ_p W c_p c_pᵀ + ρ W)(λ Σ_e c_e c_eᵀ + (1−λ) Σ_p c_p c_pᵀ + ρ I)⁻¹

with c_e the erased prompts' tokens, c_a their anchor's and c_p the retain prompts'. As in
the reference code, the erased tokens are those from the prompt's last word to the end of
the padded sequence (the words before it carry no concept yet in a causal text encoder),
aligned with the anchor's from its last word; a retain prompt contributes every token.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import PROMPT_KINDS, ConfigError
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.options import Opt
from unlearn.types import Batch, LossTerms


def cross_attention_projections(unet: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """``attn2.to_k`` and ``attn2.to_v`` of every cross-attention block, by module name."""
    out = {}
    for name, module in unet.named_modules():
        if name.endswith("attn2"):
            for proj in ("to_k", "to_v"):
                layer = getattr(module, proj, None)
                if layer is not None:
                    out[f"{name}.{proj}"] = getattr(layer, "base_layer", layer)
    return out


def edit_tokens(model: torch.nn.Module, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token embeddings (N, L, D) of ``texts`` — the cross-attention context the keys and
    values read: for SDXL both encoders' states concatenated (D = D1 + D2), since every
    ``to_k`` / ``to_v`` projects that whole context — and each prompt's last word's
    position (by the first tokenizer; SDXL's two tokenize alike)."""
    tok = model.tokenizer(
        list(texts),
        padding="max_length",
        max_length=model.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        emb = model.encode_text(list(texts)).double()
    # [BOS] w1 .. wn [EOS] [PAD]..: the last word sits at (number of real tokens) − 2
    last = (tok.attention_mask.sum(dim=1) - 2).clamp(min=0)
    return emb, last


class UCE(UnlearningMethod):
    """The closed-form edit of the cross-attention keys and values; runs once.

    λ weighs erasure against preservation: each erased prompt's tokens enter the normal
    equations with weight λ·``erase_scale``, each retain prompt's with (1−λ)·``preserve_scale``,
    and ``reg`` (ρ) keeps the weights no prompt constrains. λ = 0 leaves the model unchanged;
    λ = 1 erases with only ρ holding the rest in place (UCE without preservation). The edit
    is always made from the weights the run started from, so the unlearner takes it as one
    step (a fixed λ from the env gives the same edit whenever it is applied).

    Options:
        anchor: the prompt each erased prompt is mapped to ("": ``forget.anchor``).
        erase_scale: multiplies λ on the erased prompts.
        preserve_scale: multiplies 1−λ on the retain prompts.
        reg: ρ, the pull towards the original weights (UCE's ``lamb``, 0.1).
        keys: edit ``to_k`` as well as ``to_v`` (UCE's default).

    Args:
        cfg: the method config.
    """

    name = "uce"
    families = PROMPT_KINDS
    closed_form = True
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "anchor": Opt("", "prompt the erased prompts are mapped to ('' = forget.anchor)", str),
        "erase_scale": Opt(1.0, "weight of the erased prompts, times λ", lo=0.0, hi=1e6),
        "preserve_scale": Opt(1.0, "weight of the retain prompts, times 1-λ", lo=0.0, hi=1e6),
        "reg": Opt(0.1, "ρ: pull towards the original weights", lo=0.0, hi=1e6, lo_open=True),
        "keys": Opt(True, "edit attn2.to_k as well as attn2.to_v", bool),
    }

    def setup(self, model: torch.nn.Module, split) -> None:
        """The prompts and the original projections (every edit starts from these)."""
        from unlearn.models.t2i.tokenizer import too_long, unknown_words

        if getattr(model, "train_mode", "unet") == "lora":
            raise ConfigError(
                "model.train: 'lora' is not allowed for method 'uce' (it edits the "
                "cross-attention weights in closed form); expected unet or cross_attn"
            )
        anchor = self.options["anchor"].strip()
        if not anchor and getattr(model, "anchor_id", 0):
            anchor = model.prompts[model.anchor_id]
        if not anchor:
            raise ConfigError(
                "method.options.uce.anchor: '' is not allowed; UCE maps the concept onto an "
                "anchor prompt: set forget.anchor or method.options.uce.anchor"
            )
        bad = unknown_words(model.tokenizer, [anchor]) or too_long(model.tokenizer, [anchor])
        if bad:
            raise ConfigError(
                f"method.options.uce.anchor: {anchor!r} is not allowed; expected a prompt of "
                f"the tokenizer's words within {model.tokenizer.model_max_length} tokens"
            )
        self.anchor = anchor
        self.erase = sorted({model.prompts[int(i)] for i in split.forget.labels.unique()})
        self.preserve = sorted({model.prompts[int(i)] for i in split.retain.labels.unique()})
        keys = self.options["keys"]
        self.layers = {
            n: m for n, m in cross_attention_projections(model.unet).items() if keys or "to_v" in n
        }
        if not self.layers:
            raise ConfigError(
                "method.name: 'uce' needs a UNet with cross-attention (attn2.to_k / to_v)"
            )
        self.original = {n: m.weight.detach().clone() for n, m in self.layers.items()}
        self._moments(model)

    def _moments(self, model: torch.nn.Module) -> None:
        """The erased / anchor token pairs and the retain tokens' second moment (float64)."""
        emb, last = edit_tokens(model, [*self.erase, self.anchor])
        a_emb, a_last = emb[-1], int(last[-1])
        c_e, c_a = [], []
        for e, i in zip(emb[:-1], last[:-1].tolist(), strict=True):
            far = max(i, a_last)
            n = emb.shape[1] - far
            c_e.append(e[i : i + n])
            c_a.append(a_emb[a_last : a_last + n])
        self.c_e, self.c_a = torch.cat(c_e), torch.cat(c_a)
        if self.preserve:
            p, _ = edit_tokens(model, self.preserve)
            p = p.reshape(-1, p.shape[-1])
        else:
            p = torch.zeros(0, emb.shape[-1], dtype=emb.dtype, device=emb.device)
        self.c_p = p

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [m.weight for m in self.layers.values()]

    @torch.no_grad()
    def edit(self, model: torch.nn.Module, lam: float) -> LossTerms:
        """Set every projection to its closed form for λ (from the original weights); the
        terms are the mean squared residuals of the erased and the retain tokens."""
        s_e = float(lam) * self.options["erase_scale"]
        s_p = (1.0 - float(lam)) * self.options["preserve_scale"]
        rho = self.options["reg"]
        c_e, c_a, c_p = self.c_e, self.c_a, self.c_p
        eye = torch.eye(c_e.shape[1], dtype=c_e.dtype, device=c_e.device)
        lhs = s_e * c_e.T @ c_e + s_p * c_p.T @ c_p + rho * eye
        erase_res = preserve_res = 0.0
        for name, layer in self.layers.items():
            w0 = self.original[name].to(c_e.device, torch.float64)
            v_a = c_a @ w0.T  # the anchor's keys / values: the erased tokens' targets
            rhs = s_e * v_a.T @ c_e + s_p * (c_p @ w0.T).T @ c_p + rho * w0
            w = torch.linalg.solve(lhs, rhs.T).T  # rhs · lhs⁻¹ (lhs is symmetric)
            layer.weight.copy_(w.to(layer.weight.dtype))
            erase_res += float((c_e @ w.T - v_a).pow(2).mean())
            if len(c_p):
                preserve_res += float((c_p @ (w - w0).T).pow(2).mean())
        n = len(self.layers)
        f, r = torch.tensor(erase_res / n), torch.tensor(preserve_res / n)
        return LossTerms(retain=r, forget=f, total=lam * f + (1 - lam) * r)

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        raise RuntimeError("uce is a closed-form edit: the unlearner calls edit(), not loss()")
