"""Two-component Gaussian mixture with explicit indicators (Kucharský & Bürkner 2025).

    w ~ Beta(2, 2)                                   weight of the second component
    (mu_1, mu_2) ~ Normal((-1.5, 1.5), I), mu_1 < mu_2   (ordered: no label switching)
    sigma ~ HalfNormal(1)
    z_i ~ Bernoulli(w)                               for observations i
    y_i ~ Normal(mu_{z_i}, sigma)

The indicator ``z`` is an ordinary latent site: amortize gives it a
classifier, p(w, mu, sigma | y) · Π_obs p(z | w, mu, sigma, y[obs]). Given the
parameters, each indicator's exact posterior is the component responsibility
(:func:`responsibilities`). Data ``y`` has shape ``(obs,)``.
:func:`marginal_model` is the same mixture with the indicators summed out
(NUTS's reference for w, mu and sigma, and an amortizer without a classifier).
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from amortize.models._ordered import OrderedNormal

__all__ = ["model", "marginal_model", "responsibilities", "SIZES"]

#: Training range of the tests and benchmarks: 10–100 observations.
SIZES = {"obs": (10, 100)}


def _ordered_means():
    # Normal((-1.5, 1.5), I) restricted to mu_1 < mu_2, on NumPyro's ordered-vector support.
    return OrderedNormal(jnp.array([-1.5, 1.5]), 1.0)


def model(n_obs, y=None):
    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    mu = numpyro.sample("mu", _ordered_means())
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", n_obs):
        z = numpyro.sample("z", dist.Bernoulli(w))
        numpyro.sample("y", dist.Normal(mu[z], sigma), obs=y)


def marginal_model(n_obs, y=None):
    """:func:`model` with the indicators summed out: the same joint density of w, mu, sigma and y."""
    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    mu = numpyro.sample("mu", _ordered_means())
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    mixture = dist.MixtureSameFamily(dist.Categorical(jnp.stack([1 - w, w], -1)),
                                     dist.Normal(mu, jnp.expand_dims(sigma, -1)))
    with numpyro.plate("obs", n_obs):
        numpyro.sample("y", mixture, obs=y)


def responsibilities(y, w, mu, sigma) -> np.ndarray:
    """Exact p(z_i = 1 | y_i, w, mu, sigma), broadcasting ``w, sigma (...)`` and ``mu (..., 2)`` against ``y``."""
    y, w, mu, sigma = (np.asarray(a, np.float64) for a in (y, w, mu, sigma))
    log_first = np.log1p(-w)[..., None] - 0.5 * ((y - mu[..., :1]) / sigma[..., None]) ** 2
    log_second = np.log(w)[..., None] - 0.5 * ((y - mu[..., 1:]) / sigma[..., None]) ** 2
    return np.exp(-np.logaddexp(0.0, log_first - log_second))  # 1 / (1 + exp(.)), without overflow
