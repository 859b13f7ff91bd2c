"""Two-level Gaussian model with unknown mean, group spread and noise.

    mu ~ Normal(0, 1),  tau ~ HalfNormal(1),  sigma ~ HalfNormal(1)
    theta_j ~ Normal(mu, tau)                    for groups j
    y_ij ~ Normal(theta_j, sigma)                for observations i in group j

Data ``y`` has shape ``(group, obs)``.
"""

import numpyro
import numpyro.distributions as dist

__all__ = ["model", "SIZES"]

#: Training ranges used by the benchmarks: 2–50 groups of 1–30 observations.
SIZES = {"group": (2, 50), "obs": (1, 30)}


def model(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("group", n_group, dim=-2):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
