"""Two-level Gaussian model with known spread and noise: a closed-form posterior.

    mu ~ Normal(0, 1)
    theta_j ~ Normal(mu, TAU)          for groups j
    y_ij ~ Normal(theta_j, SIGMA)      for observations i in group j

Integrating out theta_j, the group mean ybar_j ~ Normal(mu, TAU² + SIGMA²/n_j),
so mu | y is Gaussian; given mu, theta_j | mu, y_j is Gaussian with precision
1/TAU² + n_j/SIGMA². :func:`exact_posterior` returns the marginal means and
standard deviations of mu and every theta_j.
"""

import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["model", "exact_posterior", "TAU", "SIGMA"]

TAU = 0.5
SIGMA = 1.0


def model(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("group", n_group, dim=-2):
        theta = numpyro.sample("theta", dist.Normal(mu, TAU))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", dist.Normal(theta, SIGMA), obs=y)


def exact_posterior(groups, tau=TAU, sigma=SIGMA, prior_sd=1.0):
    """Exact marginal posterior of mu and theta_j.

    Parameters
    ----------
    groups : list of 1-d arrays
        Observations of each group (ragged).

    Returns
    -------
    dict
        ``mu_mean``, ``mu_sd`` (floats), ``theta_mean``, ``theta_sd`` (arrays, one per group).
    """
    n = np.array([len(g) for g in groups], float)
    ybar = np.array([np.mean(g) for g in groups])
    marginal_var = tau**2 + sigma**2 / n
    mu_precision = 1.0 / prior_sd**2 + np.sum(1.0 / marginal_var)
    mu_var = 1.0 / mu_precision
    mu_mean = mu_var * np.sum(ybar / marginal_var)
    local_var = 1.0 / (1.0 / tau**2 + n / sigma**2)
    weight_mu = local_var / tau**2  # d E[theta_j | mu, y] / d mu
    theta_mean = local_var * (mu_mean / tau**2 + n * ybar / sigma**2)
    theta_var = local_var + weight_mu**2 * mu_var
    return {"mu_mean": mu_mean, "mu_sd": np.sqrt(mu_var),
            "theta_mean": theta_mean, "theta_sd": np.sqrt(theta_var)}
