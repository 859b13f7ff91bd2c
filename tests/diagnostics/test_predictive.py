"""Posterior predictive, log-likelihood and pooling factors against closed forms.

The draws come from the exact posterior of the conjugate model, so the only
error is Monte Carlo error, and the tolerances are a few Monte Carlo
standard errors.
"""

import arviz as az
import numpy as np
import pytest
from scipy import stats

import amortize as am
from amortize.diagnostics import log_likelihood, pooling_factors, posterior_predictive
from amortize.models import conjugate_normal as cn
from tests.conftest import exact_conjugate_draws, exact_conjugate_tree, two_level

GROUPS = [np.array([0.3]), np.array([-0.4, 0.9, 0.2]), np.array([1.5, 0.8, 1.1, 2.0, 1.2, 0.7])]
S = 8000


def _local_moments():
    exact = cn.exact_posterior(GROUPS)
    n = np.array([len(g) for g in GROUPS], float)
    local_var = 1.0 / (1.0 / cn.TAU**2 + n / cn.SIGMA**2)
    weight_mu = local_var / cn.TAU**2
    return exact, local_var, weight_mu


def test_replicated_data_have_the_posterior_predictive_moments():
    tree = posterior_predictive(exact_conjugate_tree(GROUPS, S), cn.model, seed=1)
    replicated = tree["posterior_predictive"]["y"]
    assert replicated.dims == ("chain", "draw", "obs")
    exact, _, _ = _local_moments()
    group_of_obs = np.asarray(tree["posterior_predictive"]["group_of_obs"].values)
    mean = exact["theta_mean"][group_of_obs]
    sd = np.sqrt(exact["theta_sd"][group_of_obs] ** 2 + cn.SIGMA**2)
    values = replicated.values.reshape(S, -1)
    np.testing.assert_allclose(values.mean(0), mean, atol=4 * sd.max() / np.sqrt(S))
    # sd of a sample sd: about sd / sqrt(2 S).
    np.testing.assert_allclose(values.std(0), sd, rtol=4 / np.sqrt(2 * S))


def test_log_likelihood_is_the_normal_density_of_each_observation():
    tree = exact_conjugate_tree(GROUPS, 400)
    scored = log_likelihood(tree, cn.model)
    ll = scored["log_likelihood"]["y"].values.reshape(400, -1)
    theta = tree["posterior"]["theta"].values.reshape(400, -1)
    group_of_obs = np.asarray(scored["log_likelihood"]["group_of_obs"].values)
    y = np.concatenate(GROUPS)
    expected = stats.norm.logpdf(y, theta[:, group_of_obs], cn.SIGMA)
    np.testing.assert_allclose(ll, expected, rtol=1e-4, atol=1e-4)
    loo = az.loo(scored)  # ArviZ reads the group as is
    assert np.isfinite(loo.elpd)


def test_pooling_factors_match_the_closed_form():
    exact, local_var, weight_mu = _local_moments()
    # theta_j - mu = (w_j - 1) mu + const + noise: its posterior variance over tau².
    expected = ((weight_mu - 1) ** 2 * exact["mu_sd"] ** 2 + local_var) / cn.TAU**2
    pooling = pooling_factors(exact_conjugate_tree(GROUPS, S), cn.model)
    assert pooling["theta"].dims == ("group",)
    # Relative sd of a variance estimate from S draws: sqrt(2 / S).
    np.testing.assert_allclose(pooling["theta"].values, expected, rtol=4 * np.sqrt(2 / S))
    assert np.all(np.diff(expected) < 0)  # more data, less pooling: the test can tell groups apart


def test_pooling_needs_a_local_parameter():
    def global_only(n_obs, y=None):
        import numpyro
        import numpyro.distributions as dist

        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    from amortize.convert import to_datatree
    from amortize.data import prepare_data
    from amortize.graph import graph_for

    graph = graph_for(global_only, ["y"])
    prepared = prepare_data(graph, {"y": np.zeros(3)})
    tree = to_datatree({"mu": np.zeros(4)}, prepared, graph, num_chains=1)
    with pytest.raises(am.AmortizeError, match="local latent"):
        pooling_factors(tree, global_only)


def test_predictive_runs_on_an_amortized_posterior(quick_two_level):
    groups = [np.array([0.1, 0.5]), np.array([1.0]), np.array([-0.3, 0.2, 0.4])]
    tree = posterior_predictive(quick_two_level.sample({"y": groups}, 200, seed=0), quick_two_level)
    assert tree["posterior_predictive"]["y"].shape == (4, 50, 6)
    assert np.isfinite(tree["posterior_predictive"]["y"].values).all()
    # The same draws give the same replicated data under the same seed.
    again = posterior_predictive(quick_two_level.sample({"y": groups}, 200, seed=0), two_level)
    np.testing.assert_allclose(tree["posterior_predictive"]["y"].values, again["posterior_predictive"]["y"].values)


def test_exact_draws_helper_is_the_exact_posterior():
    draws = exact_conjugate_draws(GROUPS, S, seed=3)
    exact, _, _ = _local_moments()
    np.testing.assert_allclose(draws["theta"].std(0), exact["theta_sd"], rtol=4 * np.sqrt(0.5 / S))
