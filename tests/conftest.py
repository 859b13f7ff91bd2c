"""Shared fixtures: small programs and one trained amortizer per session."""

from pathlib import Path

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.models import conjugate_normal
from amortize.models.hierarchical_normal import model as two_level  # noqa: F401 (used by tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

#: Training ranges of the conjugate model in the accuracy tests.
CONJUGATE_SIZES = {"group": (2, 6), "obs": (1, 6)}


def three_level(n_region, n_county, n_house, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))
    with numpyro.plate("region", n_region, dim=-3):
        alpha = numpyro.sample("alpha", dist.Normal(mu, 1))
        with numpyro.plate("county", n_county, dim=-2):
            beta = numpyro.sample("beta", dist.Normal(alpha, 0.5))
            with numpyro.plate("house", n_house, dim=-1):
                numpyro.sample("y", dist.Normal(beta, sigma), obs=y)


@pytest.fixture(scope="session")
def trained_conjugate():
    """The conjugate two-level model, trained once per test session (about 4 minutes on 2 cores)."""
    amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=CONJUGATE_SIZES)
    amortizer.fit(steps=6000, batch_size=64, seed=0, progress=False)
    return amortizer


@pytest.fixture(scope="session")
def quick_two_level():
    """The two-level model with unknown mu, tau, sigma after a short training (structure tests)."""
    amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 12), "obs": (1, 8)},
                           network=am.NetworkConfig(summary_width=32, flow_hidden=32, flow_layers=2))
    amortizer.fit(steps=150, batch_size=32, seed=0, progress=False)
    return amortizer
