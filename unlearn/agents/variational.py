"""Adaptive-λ SISS (seed: Dini & Jafari): λ as a latent variable with an amortised posterior.

A small inference network reads context features of the previous step (losses, gradient
norms and cosine, progress, previous λ; see :mod:`unlearn.agents.features`) and outputs
q_φ(λ | c), a Beta or a logit-normal. λ is drawn with reparameterisation, so it is a
differentiable function of φ. φ is trained jointly with the model weights θ, in the same
backward pass, on ``J(λ) + β·KL(q_φ(λ | c) || p(λ))`` where J is ``agent.options.objective``:

``siss`` (paper-literal): J = the method's objective ``LossTerms.total`` (SISS loss form).
    The importance-weighted SISS estimate is unbiased for every λ, so dJ/dλ = 0 in
    expectation: φ learns only noise plus the KL's pull to the prior. Its gradient used to be
    the pathwise one (through the importance weights, the Bernoulli(λ) component draw not
    differentiated), which is biased and pushed λ from 0.5 to about 0.02 in every demo run
    (``estimator: pathwise`` reproduces it). The default estimator adds the score-function
    term of the draw with a leave-one-out control variate
    (:func:`unlearn.methods.siss.lambda_surrogate`): unbiased, no extra forward.
``variance``: J = E[f²], the second moment of the per-pair SISS estimate f of the loss
    form. E[f] does not depend on λ, so this is its variance: φ learns the defensive-mixture
    weight with the least noisy estimate in context (same unbiased estimator). SISS only.
``utility``: J = −(forgetting progress − β_u·quality loss) on the fixed-noise proxies,
    measured every ``reward_every`` steps on the run itself and learned by REINFORCE over the
    draws of each window (a contextual bandit, :mod:`unlearn.agents.utility`). λ reaches the
    method detached: the model's loss sends no gradient to φ.

For ``siss`` and ``variance`` the gradient of the method's loss must reach φ through λ:
public code that detaches λ trains φ on the KL alone (the posterior collapses to the prior);
``tests/test_agents.py`` fails on such a detached λ. :meth:`VariationalAgent.lambda_objective`
returns the term the unlearner adds so that φ's gradient is the estimator's (it cancels the
pathwise part that ``LossTerms.total`` carries). With methods other than SISS (no mixture
draw) ``siss`` means the method's loss through λ, whose pathwise gradient is exact there.

Its λ trajectories under each objective and its step cost against a static λ are measured by
``benchmarks/lambda_trajectories.py`` and ``benchmarks/bench_variational.py``; the figures are
on the results pages of the documentation (``docs/results/measurements-2026-12.md``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Beta, Normal, kl_divergence

from unlearn.agents.base import LambdaAgent
from unlearn.agents.features import SIZE, ContextFeatures
from unlearn.agents.options import DEFAULT_LAM, Opt, OptionError, check_lam
from unlearn.agents.utility import ProxyReward
from unlearn.config import ConfigError
from unlearn.types import LossTerms, StepStats

POSTERIORS = ("beta", "logitnormal")
GRAD_MODES = ("periodic", "every", "off")
OBJECTIVES = ("siss", "variance", "utility")
ESTIMATORS = ("score", "pathwise")
_MIN_CONC = 0.1  # Beta concentrations below this make samples pile up at exactly 0 or 1
_MIN_SIGMA = 1e-3
_GRAD_FEATURES = (5, 6, 7)  # indices of the gradient features in features.NAMES


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class VariationalAgent(LambdaAgent):
    """λ ~ q_φ(λ | context), trained jointly with the model (see the module docstring).

    Args:
        posterior: ``beta`` (q = Beta(a, b)) or ``logitnormal`` (logit λ ~ N(μ, σ²)).
        beta: weight β of KL(q || prior) in :meth:`regularizer`.
        prior_a: a of the Beta prior (with ``prior_b`` = 1: uniform).
        prior_b: b of the Beta prior.
        prior_mu: mean of the N(μ0, σ0²) prior on logit λ (logit-normal posterior).
        prior_sigma: standard deviation of that prior.
        lr: Adam learning rate the unlearner uses for the network (attribute ``lr``).
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        init_lam: posterior mean before training (default ``method.lam``).
        init_concentration: a + b of the initial Beta posterior (higher = narrower).
        init_sigma: σ of the initial logit-normal posterior.
        eps: λ is squeezed affinely into [eps, 1 - eps] (keeps the gradient, unlike a clamp).
        grad_features: where the gradient norms and cosine come from. ``periodic`` (default):
            the unlearner's own measurement every ``grad_stats_every`` steps, carried in
            between (no extra cost); ``every``: measured every step (two extra backwards
            per step, about 2x the step time); ``off``: those features are 0.
        sample: draw λ (training); false uses the posterior mean (deterministic).
        objective: what φ minimises: ``siss``, ``variance`` or ``utility`` (module docstring).
        estimator: ``score`` (unbiased: pathwise + score-function term) or ``pathwise`` (the
            weights' gradient alone; biased, kept to reproduce the drift).
        utility_beta: ``utility``: weight of the quality loss against forgetting progress.
        reward_every: ``utility``: optimiser steps per reward window.
        reward_images: ``utility``: proxy images per batch per measurement (0 = all).
        extra_features: extra context inputs appended by a wrapping agent (hybrid).
    """

    name = "variational"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "posterior": Opt("beta", "posterior family", kind=str, choices=POSTERIORS),
        "beta": Opt(1e-3, "weight of KL(q || prior)", lo=0.0),
        "prior_a": Opt(1.0, "Beta prior a", lo=0.0, lo_open=True),
        "prior_b": Opt(1.0, "Beta prior b", lo=0.0, lo_open=True),
        "prior_mu": Opt(0.0, "mean of the logit-normal prior", lo=-10.0, hi=10.0),
        "prior_sigma": Opt(1.0, "std of the logit-normal prior", lo=0.0, lo_open=True),
        "lr": Opt(1e-3, "Adam learning rate of the network", lo=0.0, hi=1.0, lo_open=True),
        "hidden": Opt(32, "hidden width", kind=int, lo=1, hi=4096),
        "layers": Opt(2, "hidden layers", kind=int, lo=1, hi=8),
        "init_lam": Opt(DEFAULT_LAM, "initial posterior mean", lo=0.0, hi=1.0),
        "init_concentration": Opt(10.0, "initial a + b (Beta)", lo=0.5, hi=1e4),
        "init_sigma": Opt(0.5, "initial sigma (logit-normal)", lo=0.01, hi=10.0),
        "eps": Opt(1e-4, "lambda lies in [eps, 1 - eps]", lo=0.0, hi=0.1, lo_open=True),
        "grad_features": Opt(
            "periodic",
            "gradient features: periodic, every step, or off",
            kind=str,
            choices=GRAD_MODES,
        ),
        "sample": Opt(True, "sample lambda (false: posterior mean)", kind=bool),
        "objective": Opt("siss", "what the network minimises", kind=str, choices=OBJECTIVES),
        "estimator": Opt("score", "gradient of the draw", kind=str, choices=ESTIMATORS),
        "utility_beta": Opt(1.0, "utility: weight of the quality loss", lo=0.0),
        "reward_every": Opt(10, "utility: steps per reward window", kind=int, lo=1, hi=100000),
        "reward_images": Opt(32, "utility: proxy images per measurement", kind=int, lo=0),
    }

    def __init__(
        self,
        posterior: str = "beta",
        beta: float = 1e-3,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        prior_mu: float = 0.0,
        prior_sigma: float = 1.0,
        lr: float = 1e-3,
        hidden: int = 32,
        layers: int = 2,
        init_lam: float = 0.5,
        init_concentration: float = 10.0,
        init_sigma: float = 0.5,
        eps: float = 1e-4,
        grad_features: str = "periodic",
        sample: bool = True,
        objective: str = "siss",
        estimator: str = "score",
        utility_beta: float = 1.0,
        reward_every: int = 10,
        reward_images: int = 32,
        extra_features: int = 0,
    ):
        if posterior not in POSTERIORS:
            raise OptionError("posterior", posterior, "one of " + ", ".join(POSTERIORS))
        for key, v in (("prior_a", prior_a), ("prior_b", prior_b), ("prior_sigma", prior_sigma)):
            if not v > 0:
                raise OptionError(key, v, "a number > 0")
        self.posterior = posterior
        self.beta = float(beta)
        self.prior_a, self.prior_b = float(prior_a), float(prior_b)
        self.prior_mu, self.prior_sigma = float(prior_mu), float(prior_sigma)
        self.lr = float(lr)
        self.init_lam = min(0.98, max(0.02, check_lam("init_lam", init_lam)))
        self.init_concentration = float(init_concentration)
        self.init_sigma = float(init_sigma)
        self.eps = float(eps)
        if grad_features not in GRAD_MODES:
            raise OptionError("grad_features", grad_features, "one of " + ", ".join(GRAD_MODES))
        self.grad_mode = grad_features
        self.needs_grad_stats = grad_features == "every"  # the unlearner measures every step
        self.sample_lam = bool(sample)
        if objective not in OBJECTIVES:
            raise OptionError("objective", objective, "one of " + ", ".join(OBJECTIVES))
        if estimator not in ESTIMATORS:
            raise OptionError("estimator", estimator, "one of " + ", ".join(ESTIMATORS))
        self.objective, self.estimator = objective, estimator
        self.reward = ProxyReward(float(utility_beta), int(reward_every), int(reward_images))
        self._run = None
        self._pg: torch.Tensor | None = None
        self.extra_features = int(extra_features)
        self.features = ContextFeatures(lam0=self.init_lam)
        dims = [SIZE + extra_features] + [hidden] * layers
        mods: list[nn.Module] = []
        for i, o in zip(dims, dims[1:], strict=False):
            mods += [nn.Linear(i, o), nn.Tanh()]
        self.net = nn.Sequential(*mods, nn.Linear(dims[-1], 2))
        self._g = torch.Generator()
        self._kl: torch.Tensor | None = None
        self.reset(0)

    # -- the posterior -----------------------------------------------------------------
    def _init_bias(self) -> tuple[float, float]:
        if self.posterior == "beta":
            a = max(self.init_lam * self.init_concentration, 2 * _MIN_CONC)
            b = max((1 - self.init_lam) * self.init_concentration, 2 * _MIN_CONC)
            return _inv_softplus(a - _MIN_CONC), _inv_softplus(b - _MIN_CONC)
        mu = math.log(self.init_lam / (1 - self.init_lam))
        return mu, _inv_softplus(self.init_sigma - _MIN_SIGMA)

    def _context(self, stats: StepStats | None, extra: torch.Tensor | None) -> torch.Tensor:
        c = self.features(stats)
        if self.grad_mode == "off":
            c[list(_GRAD_FEATURES)] = 0.0
        if self.extra_features:
            extra = torch.zeros(self.extra_features) if extra is None else extra.detach()
            c = torch.cat([c, extra.reshape(-1).float()])
        return c

    def posterior_of(self, stats: StepStats | None, extra: torch.Tensor | None = None):
        """q(λ | c): a ``Beta``, or the ``Normal`` of logit λ for the logit-normal family."""
        return self._posterior(self._context(stats, extra))

    def _posterior(self, c: torch.Tensor):
        u, v = self.net(c).unbind()
        if self.posterior == "beta":
            return Beta(
                nn.functional.softplus(u) + _MIN_CONC, nn.functional.softplus(v) + _MIN_CONC
            )
        return Normal(u, nn.functional.softplus(v) + _MIN_SIGMA)

    def _prior(self):
        if self.posterior == "beta":
            return Beta(torch.tensor(self.prior_a), torch.tensor(self.prior_b))
        return Normal(torch.tensor(self.prior_mu), torch.tensor(self.prior_sigma))

    def _mean(self, q) -> torch.Tensor:
        if self.posterior == "beta":
            return q.mean
        # E[sigmoid(z)], z ~ N(μ, σ²), by the probit approximation (MacKay 1992)
        return torch.sigmoid(q.loc / torch.sqrt(1 + math.pi * q.scale**2 / 8))

    def _draw(self, q) -> torch.Tensor:
        if not self.sample_lam:
            return self._mean(q)
        if self.posterior == "beta":
            # Beta = X / (X + Y), X ~ Γ(a), Y ~ Γ(b): torch's Beta.rsample takes no generator,
            # torch._standard_gamma does and is reparameterised (implicit gradients). float64
            # because Γ(a) with small a underflows to 0 in float32 (0/0 = NaN).
            x = torch._standard_gamma(q.concentration1.double().reshape(1), self._g)
            y = torch._standard_gamma(q.concentration0.double().reshape(1), self._g)
            return (x / (x + y)).float().reshape(())
        e = torch.randn((), generator=self._g)
        return torch.sigmoid(q.loc + q.scale * e)

    def sample(self, stats: StepStats | None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """A reparameterised draw in [eps, 1 - eps]; remembers β·KL for :meth:`regularizer`."""
        c = self._context(stats, extra)
        q = self._posterior(c)
        self._kl = self.beta * kl_divergence(q, self._prior())
        u = self._draw(q)
        if self.objective == "utility":
            self._pg = self._policy_gradient_loss()
            self.reward.record(c, u)
        return self.eps + (1 - 2 * self.eps) * u

    def mean(self, stats: StepStats | None = None, extra: torch.Tensor | None = None) -> float:
        """Posterior mean of λ for ``stats`` (no sampling, no gradient)."""
        with torch.no_grad():
            return float(self._mean(self.posterior_of(stats, extra)))

    # -- LambdaAgent -------------------------------------------------------------------
    def reset(self, seed: int) -> float:
        """Re-initialise the network and the sampler from ``seed``; returns the prior mean λ0."""
        self._g.manual_seed(int(seed))
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, lin in enumerate(linears):
                bound = 1.0 / math.sqrt(lin.in_features)
                if i == len(linears) - 1:
                    bound *= 0.1  # start close to the chosen initial posterior
                lin.weight.uniform_(-bound, bound, generator=self._g)
                lin.bias.uniform_(-bound, bound, generator=self._g)
            linears[-1].bias.copy_(torch.tensor(self._init_bias()))
        self.features.reset()
        self._kl = None
        self._pg = None
        self._closed: tuple[list, float] | None = None
        self.reward.reset()
        return self.mean(None)

    def act(self, stats: StepStats | None) -> torch.Tensor:
        """λ for the next step: a 0-dim tensor that carries gradient into the network
        (detached for ``utility``, which learns from the proxies instead)."""
        self.begin_window()
        lam = self.sample(stats)
        return lam.detach() if self.objective == "utility" else lam

    def begin_window(self) -> None:
        """``utility``: the episode's first proxy measurement, before its first step."""
        if self.objective == "utility" and self._run is not None:
            self.reward.start(self._run)

    def bind(self, unlearner) -> None:
        """Keep the unlearner (utility: its proxies); check the objective fits the run."""
        if self.objective == "utility" and getattr(unlearner, "eval_data", None) is None:
            raise ConfigError(
                "agent.options.objective: 'utility' needs the fixed-noise proxies (evaluation "
                "data); allowed without them: siss, variance"
            )
        method = getattr(unlearner, "method", None)
        if self.objective == "variance" and getattr(method, "name", None) != "siss":
            raise ConfigError(
                f"agent.options.objective: 'variance' needs method.name=siss (got "
                f"{getattr(method, 'name', None)!r}); allowed for other methods: siss, utility"
            )
        self._run = unlearner

    def update(self, stats: StepStats) -> None:
        if self.objective == "utility" and self._run is not None:
            self._closed = self.reward.close(self._run, stats.step) or self._closed

    def lambda_objective(self, terms: LossTerms) -> torch.Tensor | None:
        """The term the unlearner adds to this step's loss so φ learns the chosen objective.

        ``siss`` / ``variance`` with a SISS draw: the estimator's surrogate minus the
        pathwise part ``LossTerms.total`` already carries (their λ-gradients cancel, the
        errors are detached so θ gets nothing); ``utility``: the REINFORCE loss of the last
        closed window (None between windows).
        """
        if self.objective == "utility":
            return self._pg
        if terms.draw is None or (self.objective == "siss" and self.estimator == "pathwise"):
            return None
        from unlearn.methods.siss import pair_estimates, score_term

        f = pair_estimates(terms.draw)
        if self.objective == "siss":  # the pathwise part is the one LossTerms.total carries
            return score_term(terms.draw, f)
        v = f.pow(2)
        own = v.mean() - f.mean()  # the variance's pathwise gradient in place of the total's
        return own + score_term(terms.draw, v) if self.estimator == "score" else own

    def _policy_gradient_loss(self) -> torch.Tensor | None:
        """−A · mean log q_φ(u | c) over the last closed window (once), or None."""
        if self._closed is None:
            return None
        (window, adv), self._closed = self._closed, None
        if adv == 0.0:
            return None
        logps = []
        for c, u in window:
            q = self._posterior(c)
            uc = u.clamp(1e-6, 1 - 1e-6)
            if self.posterior == "beta":
                logps.append(q.log_prob(uc.to(q.concentration1.dtype)))
            else:
                logps.append(q.log_prob(torch.log(uc) - torch.log1p(-uc)))
        return -adv * torch.stack(logps).mean()

    def parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def regularizer(self) -> torch.Tensor | None:
        """β·KL(q(λ | c) || prior) of the last :meth:`act` (None before the first)."""
        return self._kl
