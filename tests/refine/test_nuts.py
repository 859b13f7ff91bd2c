"""The compiled warm NUTS run (``amortize.refine.nuts.warm_nuts``) on a density known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import amortize as am
from amortize.refine.nuts import nuts_statistics, warm_nuts


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_warm_nuts_draws_a_correlated_gaussian_whose_data_are_arguments(chain_method):
    # log p(u | data) = N(u; data["mean"], Σ) with correlation 0.9: the data are arguments of the
    # compiled run, so one compilation serves two means. The dense inverse mass matrix is Σ itself.
    covariance = np.array([[1.0, 1.8], [1.8, 4.0]], np.float32)
    precision = jnp.asarray(np.linalg.inv(covariance))

    def log_density(u, data, masks):
        d = u - data["mean"]
        return -0.5 * d @ precision @ d

    run = warm_nuts(log_density, num_chains=2, num_warmup=100, num_samples=500, dense=True,
                    adapt_mass_matrix=False, chain_method=chain_method)
    for mean in ([0.0, 0.0], [3.0, -2.0]):
        data = {"mean": jnp.asarray(mean, jnp.float32)}
        draws, stats = run(jax.random.key(0), jnp.asarray([[0.5, 0.5], [-0.5, 1.0]]), jnp.asarray(covariance),
                           data, {})
        assert draws.shape == (2, 500, 2)
        flat_stats, max_rhat, divergences = nuts_statistics(draws, stats)
        assert divergences == 0 and max_rhat < 1.05 and flat_stats["diverging"].shape == (1000,)
        flat = np.asarray(draws).reshape(-1, 2)
        # Monte Carlo error with an effective size of a quarter of the 1000 draws.
        se = np.sqrt(np.diag(covariance) / 250)
        assert np.all(np.abs(flat.mean(0) - mean) < 4 * se), (flat.mean(0), mean)
        assert np.all(np.abs(flat.var(0) / np.diag(covariance) - 1) < 4 * np.sqrt(2 / 250))
        assert abs(np.corrcoef(flat.T)[0, 1] - 0.9) < 0.05


def test_warm_nuts_refuses_an_unknown_chain_method():
    with pytest.raises(am.RefineError, match="chain_method"):
        warm_nuts(lambda u, data, masks: 0.0, num_chains=2, num_warmup=1, num_samples=1, dense=False,
                  adapt_mass_matrix=False, chain_method="parallel")
