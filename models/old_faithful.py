"""Gaussian mixtures for the Old Faithful eruptions (duration, waiting time), with explicit indicators.

On standardized data (each column minus its mean, over its sd; see :func:`load`):

    weights ~ Dirichlet(2, ..., 2)                        K components
    mu_duration ~ Normal(0, 1.5) on K values, ordered     (no label switching)
    mu_waiting_k ~ Normal(0, 1.5)
    sigma_{k,d} ~ HalfNormal(1)                           per component and column
    z_i ~ Categorical(weights)                            for eruptions i
    y_i ~ Normal(mu_{z_i}, sigma_{z_i})                   two independent columns

``model_for(K)`` builds the program for K components; ``marginal_model_for(K)``
is the same program with the indicators summed out (a ``MixtureSameFamily``
likelihood), the reference NUTS can sample: its continuous sites are the
same, so the two posteriors compare site by site.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from amortize.models._ordered import OrderedNormal

__all__ = ["model_for", "marginal_model_for", "load", "SIZES", "COLUMNS"]

#: Training range: 100–300 eruptions (the data have 272).
SIZES = {"obs": (100, 300)}
COLUMNS = ("eruptions", "waiting")


def _parameters(k: int):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.full(k, 2.0)))
    mu_duration = numpyro.sample("mu_duration", OrderedNormal(jnp.zeros(k), 1.5))
    mu_waiting = numpyro.sample("mu_waiting", dist.Normal(jnp.zeros(k), 1.5).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.ones((k, 2))).to_event(2))
    return weights, jnp.stack([mu_duration, mu_waiting], axis=-1), sigma


def model_for(k: int):
    """The K-component mixture with an explicit indicator ``z`` per eruption; data ``y`` is ``(obs, 2)``."""
    if k < 2:
        raise ValueError(f"A mixture needs at least two components; got {k}.")

    def model(n_obs, y=None):
        weights, mu, sigma = _parameters(k)
        with numpyro.plate("obs", n_obs):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("y", dist.Normal(mu[z], sigma[z]).to_event(1), obs=y)

    model.__name__ = f"old_faithful_{k}_components"
    model.__qualname__ = model.__name__
    return model


def marginal_model_for(k: int):
    """The same mixture with the indicators summed out, for NUTS."""
    def model(n_obs, y=None):
        weights, mu, sigma = _parameters(k)
        with numpyro.plate("obs", n_obs):
            components = dist.Normal(mu, sigma).to_event(1)
            numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(weights), components), obs=y)

    model.__name__ = f"old_faithful_{k}_components_marginal"
    model.__qualname__ = model.__name__
    return model


def load(folder) -> tuple[np.ndarray, dict]:
    """The 272 eruptions, standardized column by column.

    Parameters
    ----------
    folder : str or Path
        The shared ``old_faithful`` folder (``faithful.csv``).

    Returns
    -------
    y : ``(272, 2)`` float array
        (eruption duration, waiting time), each minus its mean over its sd.
    scale : dict
        ``mean`` and ``sd`` ``(2,)`` in minutes, to map results back.
    """
    import csv

    with open(Path(folder) / "faithful.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    raw = np.array([[float(r[c]) for c in COLUMNS] for r in rows])
    mean, sd = raw.mean(0), raw.std(0)
    return (raw - mean) / sd, {"mean": mean, "sd": sd}
