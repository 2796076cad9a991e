"""THE unlearning loop: model x method x agent x budget -> result.

Every driver (``unlearn run``, the Gymnasium env's ``step()``, Tune trainables, the
benchmarks) calls this one loop. Per optimiser step, in the numbered phases of
``Unlearner._one_step``::

    1. λ      = agent.act(previous stats)              # may carry gradient (variational)
    2. terms  = method.loss(model, retain, forget, λ)  # per micro-batch: retain / forget / total
              backward of total (loss form), or ∇ retain and ∇ forget (gradient form), or one
              backward of a·retain + b·forget (a gradient form's method.fused_step)
    3. grads  = method.combine_gradients(mean ∇ retain, mean ∇ forget)   (gradient form)
    4. clip, AdamW step on the method's trainable parameters; the agent's own optimiser steps
    5. stats  = StepStats(...);  agent.update(stats);  callbacks(stats)

A closed-form method (``method.closed_form``: UCE) has a budget of one step, whose phases
2-4 are ``method.edit(model, λ)``.

Episodes reset from an in-memory copy of the starting weights, never from disk.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch

from unlearn.agents.base import LambdaAgent
from unlearn.config import Config
from unlearn.data import ForgetSplit, ImageData
from unlearn.methods.base import FusedStep, UnlearningMethod
from unlearn.methods.common import clip_to_norm, dot
from unlearn.methods.common import flat_norm as _flat_norm
from unlearn.metrics import EvalData, evaluate, proxy_losses
from unlearn.metrics.result import ModelEvaluation
from unlearn.types import Batch, LossTerms, StepStats

log = logging.getLogger(__name__)

Callback = Callable[[StepStats], None]

#: how a run ended: its whole budget, stopped early by a non-finite loss or gradient,
#: stopped from outside (its tracking store stopped answering; the local outputs are kept),
#: or its quality collapsed past the configured guard (``guard``: the retain proxy or the
#: final FID; with ``guard.stop`` it stopped there with the last weights inside the bound)
RunStatus = Literal["finished", "diverged", "stopped", "collapsed"]


class Proxies(NamedTuple):
    """Fixed-noise denoising losses on the held-out retain and forget proxy batches."""

    retain: float
    forget: float


class Evaluation(NamedTuple):
    """A sample-based evaluation and the samples it was computed on."""

    result: ModelEvaluation
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
    before: ModelEvaluation | None = None
    after: ModelEvaluation | None = None
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


def guard_fid(cfg: Config, result: UnlearnResult, before: Any, after: Any) -> None:
    """The final-FID half of the quality guard (``guard.fid_multiple``): a run that finished
    (or already collapsed) with an FID past that multiple of the base model's is marked
    ``collapsed``, the reason appended to its message. Evaluations without an FID pass."""
    mult = cfg.guard.fid_multiple
    b, a = getattr(before, "fid", math.nan), getattr(after, "fid", math.nan)
    if not mult or result.status not in ("finished", "collapsed"):
        return
    if not (math.isfinite(b) and math.isfinite(a)) or a <= mult * b:
        return
    why = f"quality collapsed: final FID {a:.4g} > guard.fid_multiple {mult:g} x the base's {b:.4g}"
    log.warning("%s", why)
    result.message = f"{result.message}; {why}" if result.status == "collapsed" else why
    result.status = "collapsed"


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


def _grad_stats(
    g_r: Sequence[torch.Tensor | None], g_f: Sequence[torch.Tensor | None]
) -> tuple[float, float, float]:
    """``(‖g_r‖, ‖g_f‖, cosine)``: each norm computed once, the dot in one device sync."""
    nr, nf = _flat_norm(g_r), _flat_norm(g_f)
    cosine = float(dot(g_r, g_f)) / (nr * nf) if nr > 0 and nf > 0 else float("nan")
    return nr, nf, cosine


@dataclass(frozen=True)
class _Plan:
    """How one step forms its gradient.

    ``gradient_form``: the method combines gradients; ``two_grads``: retain and forget are
    back-propagated separately (the exact gradient form, or gradient statistics wanted);
    ``fused``: a gradient form taken with one backward (``UnlearningMethod.fused_step``).
    """

    gradient_form: bool
    two_grads: bool
    fused: FusedStep | None


@dataclass
class _Sums:
    """Phase 2's running means over the micro-batches of one step."""

    retain: float = 0.0
    forget: float = 0.0
    total: float = 0.0
    extras: dict[str, float] = field(default_factory=dict)
    g_retain: list[torch.Tensor | None] | None = None
    g_forget: list[torch.Tensor | None] | None = None

    def add(self, values: tuple[float, float, float], terms: LossTerms, n: int) -> None:
        """One micro-batch: its (retain, forget, total) as floats and ``terms``' extras."""
        self.retain += values[0] / n
        self.forget += values[1] / n
        self.total += values[2] / n
        for k, v in (terms.extras or {}).items():
            self.extras[k] = self.extras.get(k, 0.0) + _num(v) / n

    def mean_gradients(self, n: int) -> None:
        """Sums of the micro-batches' gradients → their means (what combine and the
        statistics see, so ``grad_accum`` does not scale the reported norms)."""
        for name in ("g_retain", "g_forget"):
            grads = getattr(self, name)
            if grads is not None:
                setattr(self, name, [None if x is None else x / n for x in grads])


def mutable_state(model: torch.nn.Module, method: UnlearningMethod) -> dict[str, torch.Tensor]:
    """A copy of the tensors a run can change: the parameters that train or that the method
    edits (a closed form's projections), and every buffer. The rest — a LoRA run's base
    weights, a frozen text encoder and VAE — is never written, so a reset need not copy it
    (on SDXL base under LoRA that is the whole 3.5B-parameter pipeline)."""
    edits = method.closed_form  # a closed form writes its weights whatever they require
    changing = {id(p) for p in method.trainable_parameters(model) if edits or p.requires_grad}
    changing |= {id(p) for p in model.parameters() if p.requires_grad}
    params = {id(p) for p in model.parameters()}
    return {
        k: v.detach().clone()
        for k, v in model.state_dict(keep_vars=True).items()
        if id(v) in changing or id(v) not in params
    }


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
        # a closed-form edit is the whole run: one step
        self.budget = 1 if method.closed_form else cfg.unlearn.steps
        self.method.setup(model, split)
        self.agent.bind(self)
        self.params = [p for p in method.trainable_parameters(model) if p.requires_grad]
        # the episode's starting point, kept in memory: reset never touches disk
        self._initial = mutable_state(model, method)
        self._initial_params = self._starting_values(self.params)
        self.reset(cfg.unlearn.seed)

    def _starting_values(self, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
        """The episode's starting values of ``params``: their tensors in the snapshot (every
        trained parameter is in it), not another copy."""
        names = {id(v): k for k, v in self.model.state_dict(keep_vars=True).items()}
        return [self._initial[names[id(p)]] for p in params]

    # -- episode control -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> float:
        """Restore the starting weights, fresh optimisers; returns the agent's λ0."""
        self.seed = self.cfg.unlearn.seed if seed is None else seed
        self.model.load_state_dict(self._initial, strict=False)
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
        self.status: RunStatus = "finished"  # how the episode ended (see ``steps``)
        self.message = ""
        self._guard_reset()
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
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.t)
        # 1. λ: the agent's choice (a tensor carrying gradient for the variational agent)
        lam, lam_value = self._lam(lam_override)
        if self.method.closed_form:  # 2.-4. the edit itself
            return self._edit(lam_value)
        plan = self._plan()
        self.opt.zero_grad(set_to_none=True)
        if self.agent_opt is not None:
            self.agent_opt.zero_grad(set_to_none=True)
        # 2. loss terms over micro-batches: backward of the objective, the two gradients, or
        #    one backward of the fused gradient form
        acc = self._accumulate(lam, g, plan)
        # 3. combine: a gradient form turns the mean retain and forget gradients into the step
        if plan.gradient_form and plan.fused is None:
            self._combine(acc, lam_value)
        # 4. clip and step
        self._clip_and_step(plan)
        # 5. record
        self.t += 1
        return self._record(lam_value, acc)

    def _edit(self, lam_value: float) -> StepStats:
        """A closed-form method's step: its edit for λ, recorded like an optimiser step."""
        terms = self.method.edit(self.model, lam_value)
        acc = _Sums()
        acc.add(self._check_finite(terms), terms, 1)
        self.t += 1
        return self._record(lam_value, acc)

    def _plan(self) -> _Plan:
        """How this step's gradient is formed (see :class:`_Plan`)."""
        want_stats = self.agent.needs_grad_stats or (
            self.grad_stats_every > 0 and self.t % self.grad_stats_every == 0
        )
        gradient_form = self.method.combine == "gradient"
        # the two gradients are there anyway when statistics are measured: use the exact form
        fused = self.method.fused_step(self.t) if gradient_form and not want_stats else None
        two_grads = want_stats or (gradient_form and fused is None)
        return _Plan(gradient_form, two_grads, fused)

    def _accumulate(self, lam: float | torch.Tensor, g: torch.Generator, plan: _Plan) -> _Sums:
        """Phase 2: every micro-batch's terms, back-propagated as ``plan`` says, averaged."""
        n = self.cfg.unlearn.grad_accum
        acc = _Sums()
        for i in range(n):
            # λ's graph (variational agents) is shared by the micro-batches: keep it until the last
            keep_lam_graph = i < n - 1
            terms = self._loss_terms(lam, g)
            total = terms.total / n
            reg = self.agent.regularizer()
            own = self.agent.lambda_objective(terms)  # a learned λ's own objective (variational)
            obj = total + sum(x / n for x in (reg, own) if x is not None)
            values = self._check_finite(terms)
            if plan.two_grads:
                acc.g_retain = _add(acc.g_retain, self._grad(terms.retain))
                acc.g_forget = _add(acc.g_forget, self._grad(terms.forget))
            if not plan.gradient_form:
                obj.backward(retain_graph=keep_lam_graph)
            else:
                if self.agent_opt is not None:  # the agent still learns from the objective
                    self._agent_backward(obj, keep_lam_graph or plan.fused is not None)
                if plan.fused is not None:
                    fused = plan.fused.retain_coef * terms.retain
                    fused = fused + plan.fused.forget_coef * terms.forget
                    (fused / n).backward(inputs=self.params, retain_graph=keep_lam_graph)
            acc.add(values, terms, n)
        acc.mean_gradients(n)
        return acc

    def _grad(self, term: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return torch.autograd.grad(term, self.params, retain_graph=True, allow_unused=True)

    def _agent_backward(self, obj: torch.Tensor, keep_graph: bool) -> None:
        """Add ∂obj/∂φ to the agent's gradients (the model's come from the gradient form)."""
        agent_params = list(self.agent.parameters())
        grads = torch.autograd.grad(obj, agent_params, retain_graph=keep_graph, allow_unused=True)
        for p, gr in zip(agent_params, grads, strict=True):
            p.grad = gr if p.grad is None or gr is None else p.grad + gr

    def _check_finite(self, terms: LossTerms) -> tuple[float, float, float]:
        """The micro-batch's (retain, forget, total) as floats (one read each); refuses a
        non-finite one."""
        values = (_num(terms.retain), _num(terms.forget), _num(terms.total))
        if not all(math.isfinite(v) for v in values):
            raise DivergenceError(
                f"non-finite loss at step {self.t} (retain={values[0]:.4g}, "
                f"forget={values[1]:.4g}); weights kept from the last good step"
            )
        return values

    def _combine(self, acc: _Sums, lam_value: float) -> None:
        """Phase 3 of gradient forms: the method's direction from the two mean gradients."""
        combined = self.method.combine_gradients(acc.g_retain, acc.g_forget, lam_value)
        for p, gr in zip(self.params, combined, strict=True):
            p.grad = None if gr is None else gr.detach()

    def _clip_and_step(self, plan: _Plan) -> None:
        """Phase 4: refuse a non-finite gradient, clip, step the model's and agent's optimisers."""
        gnorm = _flat_norm([p.grad for p in self.params])
        if not math.isfinite(gnorm):
            self.opt.zero_grad(set_to_none=True)
            raise DivergenceError(
                f"non-finite gradient at step {self.t}; weights kept from the last good step"
            )
        if plan.fused is not None:  # the same clipping as the method's combine_gradients
            clipped = clip_to_norm([p.grad for p in self.params], plan.fused.clip, gnorm)
            for p, gr in zip(self.params, clipped, strict=True):
                p.grad = gr
        # gradient-form methods clip inside combine_gradients (SISS reference code)
        elif self.cfg.method.clip > 0 and not plan.gradient_form:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.method.clip)
        self.opt.step()
        if self.agent_opt is not None:
            self.agent_opt.step()

    def _record(self, lam_value: float, acc: _Sums) -> StepStats:
        """Phase 5: the step's statistics, measured every ``eval_every``; the agent sees them."""
        names = ("retain_grad_norm", "forget_grad_norm", "grad_cosine")
        if acc.g_retain is None:  # not measured this step: the last measurement carries
            g_stats = [self._carry(k) for k in names]
        else:
            g_stats = _grad_stats(acc.g_retain, acc.g_forget)
        stats = StepStats(
            step=self.t,
            budget=self.budget,
            lam=lam_value,
            retain_loss=acc.retain,
            forget_loss=acc.forget,
            total_loss=acc.total,
            **dict(zip(names, g_stats, strict=True)),
            weight_spread=self._carry("weight_spread"),
            proxy_retain=self._carry("proxy_retain"),
            proxy_forget=self._carry("proxy_forget"),
            extras=acc.extras or None,
        )
        if self.cfg.unlearn.eval_every and self.t % self.cfg.unlearn.eval_every == 0:
            stats = self.measure(stats)
            self._guard_check(stats)
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

    def forget_probe(self, n: int) -> float:
        """Sample-based forget rate from ``n`` fixed-noise samples: the forget classes' mean
        classifier probability (soft, so a few samples give a usable number; the env's and
        the policy agent's ``forget_probe`` observation). NaN without a classifier."""
        if self.eval_data is None or self.classifier is None or not self.eval_data.forget_classes:
            return float("nan")
        from unlearn.metrics.evaluate import generate
        from unlearn.metrics.i2i import I2IEvalData, forget_probe

        if isinstance(self.eval_data, I2IEvalData):  # completions of forget images
            return forget_probe(self.model, self.classifier, self.cfg, self.eval_data, int(n))

        with torch.no_grad():
            probs, _ = self.classifier.predict(generate(self.model, self.cfg, int(n)))
            cols = torch.tensor(self.eval_data.forget_classes, dtype=torch.long)
            return float(probs[:, cols].sum(dim=1).mean())

    def evaluate(self, base_forget_rate: float | None = None) -> Evaluation:
        """Sample-based evaluation of the current weights (fixed seeds)."""
        if self.eval_data is None or self.classifier is None:
            raise RuntimeError("evaluation needs eval_data and a classifier")
        return Evaluation(
            *evaluate(self.model, self.classifier, self.cfg, self.eval_data, base_forget_rate)
        )

    # -- the quality guard -----------------------------------------------------------------
    def _guard_reset(self) -> None:
        """A new episode's guard: the retain proxy's starting value (one proxy forward; only
        with ``guard.retain_multiple``) and no collapse yet."""
        self.collapsed_at: int | None = None
        self.collapse_message = ""
        self._guard_ref = math.nan
        self._in_bound: tuple[int, list[torch.Tensor]] | None = None
        if self.cfg.guard.retain_multiple and self.eval_data is not None:
            self._guard_ref = self.proxies().retain

    def _guard_check(self, stats: StepStats) -> None:
        """Flag a collapse at the first measured retain proxy past its bound; with
        ``guard.stop``, keep the trained weights of the last measurement inside it."""
        mult, ref, now = self.cfg.guard.retain_multiple, self._guard_ref, stats.proxy_retain
        if self.collapsed_at is not None or not mult or not math.isfinite(ref * now):
            return
        if now <= mult * ref:
            if self.cfg.guard.stop:
                self._in_bound = (self.t, [p.detach().clone() for p in self.params])
            return
        self.collapsed_at = self.t
        self.collapse_message = (
            f"quality collapsed at step {self.t}: retain proxy {now:.4g} > guard.retain_multiple "
            f"{mult:g} x its starting {ref:.4g}"
        )
        log.warning("%s", self.collapse_message)

    def _restore_in_bound(self) -> None:
        """``guard.stop``: the weights of the last measurement inside the bound (the
        starting weights when the first measurement was already past it)."""
        step, values = self._in_bound or (0, self._initial_params)
        with torch.no_grad():
            for p, v in zip(self.params, values, strict=True):
                p.copy_(v)
        self.status = "collapsed"
        self.collapse_message += f"; stopped, weights of step {step} restored"
        self.message = self.collapse_message
        log.warning("guard: %s", self.message)

    # -- a whole run -----------------------------------------------------------------------
    def steps(self, budget: int | None = None) -> Iterator[StepStats]:
        """The remaining optimiser steps up to ``budget``, one at a time, for a driver that
        acts between steps (the Tune trainable reports and checkpoints). Ends early when the
        agent stops or a step diverges (the last good weights are kept); ``self.status`` and
        ``self.message`` then say how it ended. :meth:`finish` closes the episode."""
        budget = self._budget(budget)
        self.status, self.message = "finished", ""
        while self.t < budget:
            if self.agent.wants_stop(self.last):
                self.message = (
                    f"stopped by agent {self.agent.name!r} after {self.t} of {budget} steps"
                )
                log.info("%s", self.message)
                return
            try:
                stats = self._one_step(None)
            except DivergenceError as e:
                self.status, self.message = "diverged", str(e)
                log.warning("%s", e)
                return
            yield stats
            if self.collapsed_at is not None and self.cfg.guard.stop:
                self._restore_in_bound()
                return

    def _budget(self, budget: int | None) -> int:
        """``budget`` (default: the run's), one step at most for a closed-form method."""
        budget = budget or self.budget
        return min(budget, 1) if self.method.closed_form else budget

    def finish(self, start: float) -> UnlearnResult:
        """The episode's result (wall time since ``start``); its last step measured."""
        if self.last is not None:
            self.last = self.measure(self.last)
            if self.history:
                self.history[-1] = self.last
            if self.collapsed_at is None:  # the end is a measurement too
                self._guard_check(self.last)
        if self.collapsed_at is not None and self.status == "finished":
            self.status, self.message = "collapsed", self.collapse_message
        return UnlearnResult(
            steps=self.t,
            wall_time=time.perf_counter() - start,
            status=self.status,
            history=list(self.history),
            message=self.message,
        )

    def run(
        self,
        budget: int | None = None,
        callbacks: Sequence[Callback] = (),
        progress: Callable[[str, int, int], None] | None = None,
    ) -> UnlearnResult:
        """Run the remaining budget; stops cleanly on divergence with the last good weights."""
        budget = self._budget(budget)
        start = time.perf_counter()
        for stats in self.steps(budget):
            for cb in callbacks:
                cb(stats)
            if progress is not None:
                progress("unlearning", self.t, budget)
        return self.finish(start)

    # -- env instances ---------------------------------------------------------------------
    def set_split(self, split: ForgetSplit, eval_data: EvalData | None = None) -> None:
        """Re-target the run at another forget split (a new env instance), in memory.

        The starting weights are restored first so the method's ``setup`` (anchors, n and k)
        sees the pretrained model; ``eval_data`` replaces the proxies and evaluation data.
        """
        self.model.load_state_dict(self._initial, strict=False)
        self.split = split
        if eval_data is not None:
            self.eval_data = eval_data
        self.method.setup(self.model, split)
        self.params = [p for p in self.method.trainable_parameters(self.model) if p.requires_grad]
        self._initial_params = self._starting_values(self.params)
        self.reset(self.seed)
