"""Adaptive-λ SISS (seed: Dini & Jafari): λ as a latent variable with an amortised posterior.

A small inference network reads context features of the previous step (losses, gradient
norms and cosine, progress, previous λ; see :mod:`unlearn.agents.features`) and outputs
q_φ(λ | c), a Beta or a logit-normal. λ is drawn with reparameterisation, so it is a
differentiable function of φ.

**Objective of the network.** φ minimises, jointly with the model weights θ and in the same
backward pass::

    L_method(θ; λ) + β · KL(q_φ(λ | c) || p(λ)),   λ ~ q_φ(λ | c) (reparameterised)

where L_method is the method's ``LossTerms.total`` (the SISS objective) computed *with the
λ tensor returned by* :meth:`VariationalAgent.act`, and the KL comes from
:meth:`VariationalAgent.regularizer`. The gradient of L_method must reach φ through λ: public
code that detaches λ trains φ on the KL alone (the posterior collapses to the prior);
``tests/test_agents.py`` fails on such a detached λ. Note that the importance-weighted SISS
estimate is unbiased for every λ, so ∂L/∂λ is not a signal of "more forgetting" in
expectation; what φ learns from is its effect on the sampled objective and, with norm scaling
and clipping, on the effective balance.
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
from unlearn.types import StepStats

POSTERIORS = ("beta", "logitnormal")
GRAD_MODES = ("periodic", "every", "off")
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

    def _params(self, stats: StepStats | None, extra: torch.Tensor | None) -> torch.Tensor:
        c = self.features(stats)
        if self.grad_mode == "off":
            c[list(_GRAD_FEATURES)] = 0.0
        if self.extra_features:
            extra = torch.zeros(self.extra_features) if extra is None else extra.detach()
            c = torch.cat([c, extra.reshape(-1).float()])
        return self.net(c)

    def posterior_of(self, stats: StepStats | None, extra: torch.Tensor | None = None):
        """q(λ | c): a ``Beta``, or the ``Normal`` of logit λ for the logit-normal family."""
        u, v = self._params(stats, extra).unbind()
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
        q = self.posterior_of(stats, extra)
        self._kl = self.beta * kl_divergence(q, self._prior())
        return self.eps + (1 - 2 * self.eps) * self._draw(q)

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
        return self.mean(None)

    def act(self, stats: StepStats | None) -> torch.Tensor:
        """λ for the next step: a 0-dim tensor that carries gradient into the network."""
        return self.sample(stats)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def regularizer(self) -> torch.Tensor | None:
        """β·KL(q(λ | c) || prior) of the last :meth:`act` (None before the first)."""
        return self._kl
