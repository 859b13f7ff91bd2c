"""The Gaussian hidden Markov model of the mixture paper (Kucharský & Bürkner 2025), and its exact filter.

For units t = 1..T along an ordered level:

    alpha_k ~ Dirichlet(2, 2), k = 1, 2             transition rows
    (mu_1, mu_2) ~ Normal((-1.5, 1.5), I), mu_1 < mu_2
    z_1 ~ Categorical(0.5, 0.5),  z_t ~ Categorical(alpha_{z_(t-1)})
    p_t ~ Uniform{2, ..., 5}                          observations of unit t (a design covariate)
    y_tj ~ Normal(mu_{z_t}, 1), j = 1..p_t

The replicates of a unit are a fixed-size vector of ``MAX_REPLICATES``; the
entries past ``p_t`` are exactly 0 with a vanishing sd, so they carry no
information and add the same constant to every log density (pass 0 there).

:func:`forward_backward` gives the exact filtering p(z_t | y_1:t, θ) and
smoothing p(z_t | y_1:T, θ) marginals and the log likelihood with the
indicators summed out, for checks and for a marginal reference model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro.contrib.control_flow import scan

from amortize.models._ordered import OrderedNormal

__all__ = ["model", "marginal_model", "forward_backward", "replicate_mask", "MAX_REPLICATES", "SIZES"]

MAX_REPLICATES = 5
#: Training range of the number of units (the chain's length).
SIZES = {"unit": (10, 50)}
_PAD_SD = 1e-3


def replicate_mask(count) -> jax.Array:
    """``(..., MAX_REPLICATES)`` bool: which replicates of a unit with ``count`` observations exist."""
    return jnp.arange(MAX_REPLICATES) < jnp.asarray(count)[..., None]


def _parameters():
    alpha = numpyro.sample("alpha", dist.Dirichlet(jnp.full((2, 2), 2.0)).to_event(1))
    mu = numpyro.sample("mu", OrderedNormal(jnp.array([-1.5, 1.5]), 1.0))
    return alpha, mu


def _replicates(mean, count):
    exists = replicate_mask(count)
    return dist.Normal(jnp.where(exists, mean[..., None], 0.0), jnp.where(exists, 1.0, _PAD_SD)).to_event(1)


def model(n_unit, y=None, count=None):
    """``y``: ``(unit, MAX_REPLICATES)`` (0 past each unit's count); ``count``: ``(unit,)`` in 2..5."""
    alpha, mu = _parameters()

    def step(previous, inputs):
        y_t, count_t = inputs
        probs = jnp.where(previous < 0, 0.5, alpha[jnp.maximum(previous, 0)])
        z = numpyro.sample("z", dist.Categorical(probs))
        count_t = numpyro.sample("count", dist.DiscreteUniform(2, MAX_REPLICATES), obs=count_t)
        numpyro.sample("y", _replicates(mu[z], count_t), obs=y_t)
        return z, None

    scan(step, jnp.array(-1), (y, count), length=n_unit)


def forward_backward(y, count, alpha, mu):
    """Exact marginals of the chain given the parameters, by the forward–backward algorithm.

    Parameters
    ----------
    y : ``(T, MAX_REPLICATES)``; count : ``(T,)``
    alpha : ``(2, 2)`` transition rows; mu : ``(2,)``

    Returns
    -------
    filtered, smoothed : ``(T, 2)``
        p(z_t | y_1:t) and p(z_t | y_1:T).
    log_likelihood : float
        log p(y | alpha, mu), the indicators summed out (the padded
        replicates' constant included, as in :func:`model`).
    """
    y, alpha, mu = (np.asarray(a, np.float64) for a in (y, alpha, mu))
    exists = np.arange(MAX_REPLICATES) < np.asarray(count)[:, None]
    # log p(y_t | z_t = k) for k = 0, 1: (T, 2)
    emission = np.stack([
        np.where(exists, -0.5 * (y - m) ** 2 - 0.5 * np.log(2 * np.pi),
                 -0.5 * (y / _PAD_SD) ** 2 - np.log(_PAD_SD) - 0.5 * np.log(2 * np.pi)).sum(1)
        for m in mu], axis=1)
    steps = len(y)
    filtered = np.zeros((steps, 2))
    log_likelihood = 0.0
    prior = np.array([0.5, 0.5])
    for t in range(steps):
        if t > 0:
            prior = filtered[t - 1] @ alpha
        joint = np.log(prior) + emission[t]
        shift = joint.max()
        log_norm = shift + np.log(np.exp(joint - shift).sum())
        filtered[t] = np.exp(joint - log_norm)
        log_likelihood += log_norm
    smoothed = np.zeros_like(filtered)
    smoothed[-1] = filtered[-1]
    for t in range(steps - 2, -1, -1):
        predicted = filtered[t] @ alpha
        smoothed[t] = filtered[t] * (alpha @ (smoothed[t + 1] / predicted))
    return filtered, smoothed, float(log_likelihood)


def marginal_model(n_unit, y=None, count=None):
    """The same model with the chain summed out by the forward algorithm (for NUTS).

    The data enter through ``numpyro.factor`` (one log-normalizer per unit), so
    ``y`` is not a sample site here; ``alpha`` and ``mu`` are the same sites
    as in :func:`model`.
    """
    alpha, mu = _parameters()

    def step(carry, inputs):
        log_filtered, first = carry
        y_t, count_t = inputs
        count_t = numpyro.sample("count", dist.DiscreteUniform(2, MAX_REPLICATES), obs=count_t)
        emission = jnp.stack([_replicates(mu[k], count_t).log_prob(y_t) for k in range(2)])
        # z_1 ~ (0.5, 0.5): the first step uses uniform transition rows.
        transitions = jnp.where(first, jnp.log(0.5), jnp.log(alpha))
        joint = jax.nn.logsumexp(log_filtered[:, None] + transitions, axis=0) + emission
        norm = jax.nn.logsumexp(joint)
        numpyro.factor("y_given_past", norm)
        return (joint - norm, jnp.array(False)), None

    scan(step, (jnp.log(jnp.array([0.5, 0.5])), jnp.array(True)), (y, count), length=n_unit)
