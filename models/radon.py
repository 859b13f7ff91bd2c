"""Radon in Minnesota homes (Gelman & Hill 2007): varying intercepts, and intercepts + slopes.

Both models measure log radon in houses i of counties j, on the basement (floor 0)
or the first floor (floor 1):

``intercepts``::

    mu_a ~ Normal(1, 1),  sigma_a ~ HalfNormal(1),  beta ~ Normal(0, 1),  sigma_y ~ HalfNormal(1)
    a_j ~ Normal(mu_a, sigma_a)
    log_radon_ij ~ Normal(a_j + beta · floor_ij, sigma_y)

``intercepts_slopes`` (the floor effect varies by county too)::

    mu_b ~ Normal(0, 1),  sigma_b ~ HalfNormal(1)
    b_j ~ Normal(mu_b, sigma_b)
    log_radon_ij ~ Normal(a_j + b_j · floor_ij, sigma_y)

``floor`` is a covariate: during training the program draws it from the design
distribution Bernoulli(0.2) (17% of Minnesota's measurements are on the first
floor); at inference it is observed like ``log_radon``, and the posterior
conditions on it.
"""

import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["intercepts", "intercepts_slopes", "SIZES", "load"]

#: Training ranges: 40–90 counties of 1–120 houses (Minnesota: 85 counties, 1–116 houses).
SIZES = {"county": (40, 90), "house": (1, 120)}

#: Share of first-floor measurements assumed by the design distribution.
FIRST_FLOOR_SHARE = 0.2


def intercepts(n_county, n_house, floor=None, log_radon=None):
    mu_a = numpyro.sample("mu_a", dist.Normal(1.0, 1.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    with numpyro.plate("county", n_county, dim=-2):
        a = numpyro.sample("a", dist.Normal(mu_a, sigma_a))
        with numpyro.plate("house", n_house, dim=-1):
            floor = numpyro.sample("floor", dist.Bernoulli(FIRST_FLOOR_SHARE), obs=floor)
            numpyro.sample("log_radon", dist.Normal(a + beta * floor, sigma_y), obs=log_radon)


def intercepts_slopes(n_county, n_house, floor=None, log_radon=None):
    mu_a = numpyro.sample("mu_a", dist.Normal(1.0, 1.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 1.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(1.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    with numpyro.plate("county", n_county, dim=-2):
        a = numpyro.sample("a", dist.Normal(mu_a, sigma_a))
        b = numpyro.sample("b", dist.Normal(mu_b, sigma_b))
        with numpyro.plate("house", n_house, dim=-1):
            floor = numpyro.sample("floor", dist.Bernoulli(FIRST_FLOOR_SHARE), obs=floor)
            numpyro.sample("log_radon", dist.Normal(a + b * floor, sigma_y), obs=log_radon)


def load(folder):
    """Minnesota's 919 houses in long format.

    Parameters
    ----------
    folder : str or Path
        The shared ``radon`` folder (``radon_mn.csv``).

    Returns
    -------
    data : dict
        ``floor`` and ``log_radon``, one row per house.
    index : dict
        ``{"county": county name of each row}`` (pass as ``index=``).
    """
    import csv
    from pathlib import Path

    with open(Path(folder) / "radon_mn.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = {"floor": np.array([float(r["floor"]) for r in rows]),
            "log_radon": np.array([float(r["log_radon"]) for r in rows])}
    return data, {"county": np.array([r["county"] for r in rows])}
