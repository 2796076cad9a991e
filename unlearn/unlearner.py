"""THE unlearning loop: model x method x agent x budget -> result.

Every driver (``unlearn run``, the Gymnasium env's ``step()``, Tune trainables, the
benchmarks) calls this one loop. Per optimiser step::

    λ      = agent.act(previous stats)                 # may carry gradient (variational)
    terms  = method.loss(model, retain, forget, λ)     # retain / forget / total
    grads  = ∇ total  (or method.combine_gradients(∇ retain, ∇ forget) for gradient forms)
    clip, AdamW step on the method's trainable parameters; the agent's own optimiser steps
    stats  = StepStats(...);  agent.update(stats);  callbacks(stats)

Episodes reset from an in-memory copy of the starting weights, never from disk.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch

from unlearn.agents.base import LambdaAgent
from unlearn.config import Config
from unlearn.data import ForgetSplit, ImageData
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import flat_norm as _flat_norm
from unlearn.metrics import EvalData, EvalResult, evaluate, proxy_losses
from unlearn.types import Batch, StepStats

log = logging.getLogger(__name__)

Callback = Callable[[StepStats], None]

#: how a run ended: its whole budget, or stopped early by a non-finite loss or gradient
RunStatus = Literal["finished", "diverged"]


class Proxies(NamedTuple):
    """Fixed-noise denoising losses on the held-out retain and forget proxy batches."""

    retain: float
    forget: float


class Evaluation(NamedTuple):
    """A sample-based evaluation and the samples it was computed on."""

    result: EvalResult
    samples: torch.Tensor


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient; the weights are the last good ones."""


@dataclass
class UnlearnResult:
    """What one unlearning run produced."""

    steps: int
    wall_time: float
    status: RunStatus
    history: list[StepStats] = field(default_factory=list)
    before: EvalResult | None = None
    after: EvalResult | None = None
    message: str = ""
    run_id: str | None = None
    model_dir: str | None = None

    @property
    def lambdas(self) -> list[float]:
        return [s.lam for s in self.history]

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "wall_time": self.wall_time,
            "status": self.status,
            "message": self.message,
            "run_id": self.run_id,
            "model_dir": self.model_dir,
            "lambdas": self.lambdas,
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
        }


def _batch(data: ImageData, size: int, g: torch.Generator) -> Batch:
    idx = torch.randint(0, len(data), (size,), generator=g)
    return Batch(data.images[idx], data.labels[idx])


def _num(v: torch.Tensor | float) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _add(
    acc: list[torch.Tensor | None] | None, new: Sequence[torch.Tensor | None]
) -> list[torch.Tensor | None]:
    if acc is None:
        return list(new)
    return [b if a is None else a if b is None else a + b for a, b in zip(acc, new, strict=True)]


def _cosine(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> float:
    dot = sum(
        float((x * y).sum()) for x, y in zip(a, b, strict=True) if x is not None and y is not None
    )
    na, nb = _flat_norm(a), _flat_norm(b)
    return dot / (na * nb) if na > 0 and nb > 0 else float("nan")


class Unlearner:
    """Runs one unlearning episode of ``cfg.unlearn.steps`` optimiser steps.

    Args:
        model: the pretrained model (modified in place; ``reset`` restores it).
        method: the unlearning loss.
        agent: chooses λ each step.
        split: retain / forget training data.
        cfg: the experiment config (``unlearn`` section: batch size, lr, accumulation, seed).
        device: where the model lives.
        eval_data: fixed evaluation data; enables proxies and sample-based evaluation.
        classifier: the evaluation classifier (sample-based evaluation).
        grad_stats_every: compute retain/forget gradient norms and cosine every N steps
            (they cost two extra backwards); agents that need them get them every step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        method: UnlearningMethod,
        agent: LambdaAgent,
        split: ForgetSplit,
        cfg: Config,
        device: torch.device | str = "cpu",
        eval_data: EvalData | None = None,
        classifier: torch.nn.Module | None = None,
        grad_stats_every: int = 10,
    ):
        self.model = model
        self.method = method
        self.agent = agent
        self.split = split
        self.cfg = cfg
        self.device = torch.device(device)
        self.eval_data = eval_data
        self.classifier = classifier
        self.grad_stats_every = grad_stats_every
        self.budget = cfg.unlearn.steps
        self.method.setup(model, split)
        self.agent.bind(self)
        self.params = [p for p in method.trainable_parameters(model) if p.requires_grad]
        # the episode's starting point, kept in memory: reset never touches disk
        self._initial = copy.deepcopy(
            {k: v.detach().clone() for k, v in model.state_dict().items()}
        )
        self._initial_params = [p.detach().clone() for p in self.params]
        self.reset(cfg.unlearn.seed)

    # -- episode control -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> float:
        """Restore the starting weights, fresh optimisers; returns the agent's λ0."""
        self.seed = self.cfg.unlearn.seed if seed is None else seed
        self.model.load_state_dict(self._initial)
        self.model.train()
        self.opt = torch.optim.AdamW(self.params, lr=self.cfg.unlearn.lr, weight_decay=0.0)
        lam0 = self.agent.reset(self.seed)
        agent_params = list(self.agent.parameters())
        self.agent_opt = (
            torch.optim.Adam(agent_params, lr=getattr(self.agent, "lr", 1e-3))
            if agent_params
            else None
        )
        self.t = 0
        self.last: StepStats | None = None
        self.history: list[StepStats] = []
        self.scaler_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        return float(lam0)

    # -- one step --------------------------------------------------------------------------
    def _lam(self, override: float | None) -> tuple[float | torch.Tensor, float]:
        if override is not None:
            lam = float(min(1.0, max(0.0, override)))
            return lam, lam
        lam = self.agent.act(self.last)
        value = float(lam.detach()) if isinstance(lam, torch.Tensor) else float(lam)
        if not math.isfinite(value):
            raise DivergenceError(f"agent {self.agent.name!r} produced a non-finite λ")
        return lam, value

    def _loss_terms(self, lam, g: torch.Generator):
        u = self.cfg.unlearn
        retain = _batch(self.split.retain, u.batch_size, g).to(self.device)
        forget = _batch(self.split.forget, u.batch_size, g).to(self.device)
        if self.scaler_dtype is not None:
            with torch.autocast("cuda", dtype=self.scaler_dtype):
                return self.method.loss(self.model, retain, forget, lam, g)
        return self.method.loss(self.model, retain, forget, lam, g)

    def step(self, n: int = 1, lam: float | None = None) -> list[StepStats]:
        """Run ``n`` optimiser steps (``lam`` fixes λ instead of asking the agent: the env)."""
        out = []
        for _ in range(n):
            out.append(self._one_step(lam))
        return out

    def _one_step(self, lam_override: float | None) -> StepStats:
        u = self.cfg.unlearn
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.t)
        lam, lam_value = self._lam(lam_override)
        want_stats = self.agent.needs_grad_stats or (
            self.grad_stats_every > 0 and self.t % self.grad_stats_every == 0
        )
        gradient_form = self.method.combine == "gradient"
        self.opt.zero_grad(set_to_none=True)
        if self.agent_opt is not None:
            self.agent_opt.zero_grad(set_to_none=True)
        r_sum = f_sum = tot_sum = 0.0
        g_r_acc = g_f_acc = None
        extras: dict[str, float] = {}
        for i in range(u.grad_accum):
            # λ's graph (variational agents) is shared by the micro-batches: keep it until the last
            keep_lam_graph = i < u.grad_accum - 1
            terms = self._loss_terms(lam, g)
            total = terms.total / u.grad_accum
            reg = self.agent.regularizer()
            obj = total + (reg / u.grad_accum if reg is not None else 0.0)
            if not all(math.isfinite(_num(v)) for v in (terms.retain, terms.forget, terms.total)):
                raise DivergenceError(
                    f"non-finite loss at step {self.t} (retain={_num(terms.retain):.4g}, "
                    f"forget={_num(terms.forget):.4g}); weights kept from the last good step"
                )
            if gradient_form or want_stats:
                g_r = torch.autograd.grad(
                    terms.retain, self.params, retain_graph=True, allow_unused=True
                )
                g_f = torch.autograd.grad(
                    terms.forget, self.params, retain_graph=True, allow_unused=True
                )
                g_r_acc = _add(g_r_acc, g_r)
                g_f_acc = _add(g_f_acc, g_f)
            if not gradient_form:
                obj.backward(retain_graph=keep_lam_graph)
            elif self.agent_opt is not None:  # the agent still learns from the objective
                agent_params = list(self.agent.parameters())
                grads = torch.autograd.grad(
                    obj, agent_params, retain_graph=keep_lam_graph, allow_unused=True
                )
                for p, gr in zip(agent_params, grads, strict=True):
                    p.grad = gr if p.grad is None or gr is None else p.grad + gr
            r_sum += _num(terms.retain) / u.grad_accum
            f_sum += _num(terms.forget) / u.grad_accum
            tot_sum += _num(terms.total) / u.grad_accum
            for k, v in (terms.extras or {}).items():
                extras[k] = extras.get(k, 0.0) + _num(v) / u.grad_accum
        if gradient_form:
            combined = self.method.combine_gradients(
                [None if x is None else x / u.grad_accum for x in g_r_acc],
                [None if x is None else x / u.grad_accum for x in g_f_acc],
                lam_value,
            )
            for p, gr in zip(self.params, combined, strict=True):
                p.grad = None if gr is None else gr.detach()
        grads = [p.grad for p in self.params]
        gnorm = _flat_norm(grads)
        if not math.isfinite(gnorm):
            self.opt.zero_grad(set_to_none=True)
            raise DivergenceError(
                f"non-finite gradient at step {self.t}; weights kept from the last good step"
            )
        # gradient-form methods clip inside combine_gradients (SISS reference code)
        if self.cfg.method.clip > 0 and not gradient_form:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.method.clip)
        self.opt.step()
        if self.agent_opt is not None:
            self.agent_opt.step()
        self.t += 1
        stats = StepStats(
            step=self.t,
            budget=self.budget,
            lam=lam_value,
            retain_loss=r_sum,
            forget_loss=f_sum,
            total_loss=tot_sum,
            retain_grad_norm=_flat_norm(g_r_acc)
            if g_r_acc is not None
            else self._carry("retain_grad_norm"),
            forget_grad_norm=_flat_norm(g_f_acc)
            if g_f_acc is not None
            else self._carry("forget_grad_norm"),
            grad_cosine=_cosine(g_r_acc, g_f_acc)
            if g_r_acc is not None
            else self._carry("grad_cosine"),
            weight_spread=self._carry("weight_spread"),
            proxy_retain=self._carry("proxy_retain"),
            proxy_forget=self._carry("proxy_forget"),
            extras=extras or None,
        )
        if self.cfg.unlearn.eval_every and self.t % self.cfg.unlearn.eval_every == 0:
            stats = self.measure(stats)
        self.agent.update(stats)
        self.last = stats
        self.history.append(stats)
        return stats

    def _carry(self, name: str) -> float:
        return getattr(self.last, name) if self.last is not None else float("nan")

    def measure(self, stats: StepStats) -> StepStats:
        """Add the fixed-noise proxies and the weights' drift to ``stats``."""
        import dataclasses

        drift = math.sqrt(
            sum(
                float((p.detach() - p0).pow(2).sum())
                for p, p0 in zip(self.params, self._initial_params, strict=True)
            )
        )
        base = math.sqrt(sum(float(p0.pow(2).sum()) for p0 in self._initial_params)) or 1.0
        upd = {"weight_spread": drift / base}
        if self.eval_data is not None:
            upd["proxy_retain"], upd["proxy_forget"] = self.proxies()
        return dataclasses.replace(stats, **upd)

    def proxies(self, n: int | None = None) -> Proxies:
        """Fixed-noise (retain, forget) proxy losses; ``n``: only the first n images of each."""
        if self.eval_data is None:
            return Proxies(float("nan"), float("nan"))
        r, f = self.eval_data.proxy_retain, self.eval_data.proxy_forget
        if n is not None:
            r, f = r.head(n), f.head(n)
        return Proxies(*proxy_losses(self.model, r, f))

    def evaluate(self, base_forget_rate: float | None = None) -> Evaluation:
        """Sample-based evaluation of the current weights (fixed seeds)."""
        if self.eval_data is None or self.classifier is None:
            raise RuntimeError("evaluation needs eval_data and a classifier")
        return Evaluation(
            *evaluate(self.model, self.classifier, self.cfg, self.eval_data, base_forget_rate)
        )

    # -- a whole run -----------------------------------------------------------------------
    def run(
        self,
        budget: int | None = None,
        callbacks: Sequence[Callback] = (),
        progress: Callable[[str, int, int], None] | None = None,
    ) -> UnlearnResult:
        """Run the remaining budget; stops cleanly on divergence with the last good weights."""
        budget = budget or self.budget
        start = time.perf_counter()
        status: RunStatus = "finished"
        message = ""
        while self.t < budget:
            try:
                stats = self._one_step(None)
            except DivergenceError as e:
                status, message = "diverged", str(e)
                log.warning("%s", e)
                break
            for cb in callbacks:
                cb(stats)
            if progress is not None:
                progress("unlearning", self.t, budget)
        if self.last is not None:
            self.last = self.measure(self.last)
            if self.history:
                self.history[-1] = self.last
        return UnlearnResult(
            steps=self.t,
            wall_time=time.perf_counter() - start,
            status=status,
            history=list(self.history),
            message=message,
        )

    # -- env instances ---------------------------------------------------------------------
    def set_split(self, split: ForgetSplit, eval_data: EvalData | None = None) -> None:
        """Re-target the run at another forget split (a new env instance), in memory.

        The starting weights are restored first so the method's ``setup`` (anchors, n and k)
        sees the pretrained model; ``eval_data`` replaces the proxies and evaluation data.
        """
        self.model.load_state_dict(self._initial)
        self.split = split
        if eval_data is not None:
            self.eval_data = eval_data
        self.method.setup(self.model, split)
        self.params = [p for p in self.method.trainable_parameters(self.model) if p.requires_grad]
        self._initial_params = [p.detach().clone() for p in self.params]
        self.reset(self.seed)
