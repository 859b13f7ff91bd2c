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
    # float64, so ArviZ's weights exp(-log p) do not underflow for draws that fit poorly.
    assert scored["log_likelihood"]["y"].dtype == np.float64


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
    from amortize.prepare import prepare_data
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
    # Each replicated observation is y_rep = theta[its group] + sigma * eps, draw by draw: so
    # y_rep - theta has mean 0, and its mean over the 200 draws is within 4 Monte Carlo sds of it
    # (a y_rep drawn from the wrong group's theta, or from the prior, would be far off).
    y_rep = tree["posterior_predictive"]["y"].values.reshape(200, 6)
    theta = tree["posterior"]["theta"].values.reshape(200, 3)
    residual = y_rep - theta[:, [0, 0, 1, 2, 2, 2]]
    assert np.all(np.abs(residual.mean(0)) < 4 * residual.std(0) / np.sqrt(200))
    # The same draws give the same replicated data under the same seed.
    again = posterior_predictive(quick_two_level.sample({"y": groups}, 200, seed=0), two_level)
    np.testing.assert_allclose(tree["posterior_predictive"]["y"].values, again["posterior_predictive"]["y"].values)


def test_exact_draws_helper_is_the_exact_posterior():
    draws = exact_conjugate_draws(GROUPS, S, seed=3)
    exact, _, _ = _local_moments()
    np.testing.assert_allclose(draws["theta"].std(0), exact["theta_sd"], rtol=4 * np.sqrt(0.5 / S))


# --- Ordered levels: the one-step-ahead predictive ----------------------------------------------

def _air_traffic_tree(data: dict, draws: dict):
    from amortize.convert import to_datatree
    from amortize.prepare import prepare_data
    from amortize.graph import graph_for
    from amortize.models import air_traffic

    graph = graph_for(air_traffic.model, ["u", "w", "y"])
    return to_datatree(draws, prepare_data(graph, data), graph, num_chains=2)


def _ar_draws(rng, num_draws: int, num_countries: int) -> dict:
    from amortize.models import air_traffic

    draws = {name: np.abs(rng.normal(0, 0.3, num_draws)) for name in air_traffic.HYPER}
    local = {"alpha": rng.normal(0, 0.5, (num_draws, num_countries)),
             # A strong autoregression makes a replicated past visibly differ from the observed one.
             "beta": rng.uniform(0.6, 0.9, (num_draws, num_countries)),
             "gamma": rng.normal(0, 0.5, (num_draws, num_countries)),
             "delta": rng.normal(0, 0.5, (num_draws, num_countries)),
             "log_sigma": rng.normal(-1, 0.3, (num_draws, num_countries))}
    return draws | local


def _standardized_one_step_residuals(tree, data, draws):
    """(y_rep_t - E[y_t | observed y_{t-1}, u_{t-1}, w_{t-1}, draw]) / sd, every draw and step."""
    replicated = tree["posterior_predictive"]["y"].values.reshape(len(draws["alpha"]), -1)
    z, start = [], 0
    for j, y in enumerate(data["y"]):
        u, w, rep = data["u"][j], data["w"][j], replicated[:, start:start + len(y)]
        start += len(y)
        z.append(rep[:, 0] - 0.5)
        mean = (draws["alpha"][:, j, None] + y[None, :-1] * draws["beta"][:, j, None]
                + u[None, :-1] * draws["gamma"][:, j, None] + w[None, :-1] * draws["delta"][:, j, None])
        z.append(((rep[:, 1:] - mean) / np.exp(draws["log_sigma"][:, j, None])).ravel())
    return np.concatenate(z)


def test_one_step_predictive_conditions_each_step_on_the_observed_past():
    from amortize.models import air_traffic

    rng = np.random.default_rng(3)
    lengths = [4, 9, 6]
    data = {n: [rng.normal(size=k) for k in lengths] for n in ("u", "w", "y")}
    draws = _ar_draws(rng, 2000, len(lengths))
    tree = _air_traffic_tree(data, draws)
    one_step = posterior_predictive(tree, air_traffic.model, seed=1, one_step=True)
    assert one_step["posterior_predictive"].attrs["kind"] == "one-step-ahead"
    z = _standardized_one_step_residuals(one_step, data, draws)
    n = z.size
    # Exactly standard normal: 5 standard errors of the mean and of the variance.
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    # Whole replicated series run on their own past, so against the observed
    # past their residuals carry beta² × the replicated-vs-observed spread.
    replicated = posterior_predictive(tree, air_traffic.model, seed=1)
    assert replicated["posterior_predictive"].attrs["kind"] == "replicated"
    assert _standardized_one_step_residuals(replicated, data, draws).var() > 1 + 20 * np.sqrt(2 / n)


def test_series_figure_covers_data_simulated_at_the_drawn_parameters(tmp_path):
    from numpyro import handlers

    from amortize.diagnostics import plot_series, series_figure_data
    from amortize.models import air_traffic

    rng = np.random.default_rng(4)
    countries, years = 20, 20
    truth = {k: v[0] for k, v in _ar_draws(rng, 1, countries).items()}
    trace = handlers.trace(handlers.seed(handlers.condition(air_traffic.model, truth), 5)).get_trace(
        n_country=countries, n_time=years)
    data = {n: [np.asarray(trace[n]["value"])[:, j] for j in range(countries)] for n in ("u", "w", "y")}
    for name in data:
        data[name][3] = data[name][3][:12]  # ragged: one short series
    draws = {k: np.repeat(np.asarray(v)[None], 1000, axis=0) for k, v in truth.items()}
    with pytest.raises(am.AmortizeError, match="no posterior_predictive group"):
        series_figure_data(_air_traffic_tree(data, draws), air_traffic.model)
    tree = posterior_predictive(_air_traffic_tree(data, draws), air_traffic.model, seed=2, one_step=True)
    figure = series_figure_data(tree, air_traffic.model, max_panels=8)
    site = figure["sites"]["y"]
    assert figure["kind"] == "one-step-ahead" and figure["level"] == "time"
    assert site["series"] == countries and len(site["panels"]) == 8
    assert len(site["panels"][3]["observed"]) == 12
    np.testing.assert_allclose(site["panels"][0]["observed"], data["y"][0], atol=1e-5)
    # At the true parameters each observation falls in its 90% (50%) band with
    # that probability, independently: 4 binomial standard errors.
    n = sum(len(y) for y in data["y"])
    for prob, key in ((0.9, "coverage_90"), (0.5, "coverage_50")):
        assert abs(site[key] - prob) < 4 * np.sqrt(prob * (1 - prob) / n)
    plot_series(figure, tmp_path / "series.png")
    assert (tmp_path / "series.png").stat().st_size > 10_000


def test_series_figure_needs_an_ordered_level():
    from amortize.diagnostics import series_figure_data

    tree = posterior_predictive(exact_conjugate_tree(GROUPS, 40), cn.model)
    with pytest.raises(am.AmortizeError, match="ordered level"):
        series_figure_data(tree, cn.model)
