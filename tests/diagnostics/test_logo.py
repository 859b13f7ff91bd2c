"""Leave-one-group-out CV against the closed form of the conjugate model."""

import math

import arviz as az
import numpy as np
import pytest
from scipy import stats

import amortize as am
from amortize.diagnostics import elpd_difference, logo
from amortize.models import conjugate_normal as cn

GROUPS = [np.array([0.4, 1.1]), np.array([-0.5, 0.1, 0.3, -0.2]), np.array([1.8]), np.array([0.2, 0.9, 0.5])]


def exact_elpd(groups, j, shift_sd=0.0, sd_scale=1.0):
    """log p(y_j | y_-j): y_j | mu ~ N(mu 1, sigma² I + tau² 11ᵀ), mu | y_-j Gaussian.

    ``shift_sd`` and ``sd_scale`` perturb the posterior of mu given y_-j (to turn
    the amortizer's accuracy bound into a bound on the elpd).
    """
    rest = [g for i, g in enumerate(groups) if i != j]
    posterior = cn.exact_posterior(rest)
    mean = posterior["mu_mean"] + shift_sd * posterior["mu_sd"]
    var = (sd_scale * posterior["mu_sd"]) ** 2
    y = groups[j]
    n = len(y)
    covariance = cn.SIGMA**2 * np.eye(n) + (cn.TAU**2 + var) * np.ones((n, n))
    return stats.multivariate_normal(np.full(n, mean), covariance).logpdf(y)


def test_logo_matches_the_exact_leave_one_group_out_density(trained_conjugate):
    result = logo(trained_conjugate, {"y": GROUPS}, num_samples=4000, seed=0)
    assert result.n_data_points == 4 and result.kind == "loo_kfold"
    exact = np.array([exact_elpd(GROUPS, j) for j in range(4)])
    # The amortizer meets 0.15 posterior sds in mean and 15% in sd (the accuracy
    # test); the elpd moves by at most this much under such an error of mu | y_-j ...
    bound = np.array([max(abs(exact_elpd(GROUPS, j, s, k) - exact[j])
                          for s in (-0.15, 0.15) for k in (0.85, 1.15)) for j in range(4)])
    # ... plus Monte Carlo error of a log-mean of 4000 likelihoods (relative sd of the
    # mean below 5% for these small groups).
    error = np.abs(result.elpd_i.values - exact)
    assert np.all(error <= bound + 0.05), (result.elpd_i.values, exact, bound)
    assert result.elpd == pytest.approx(exact.sum(), abs=bound.sum() + 0.2)
    assert result.se == pytest.approx(math.sqrt(4 * np.var(result.elpd_i.values)))
    # In-sample fit beats out-of-sample: positive effective number of parameters.
    assert result.p > 0


def test_elpd_difference_agrees_with_arviz_compare(trained_conjugate, quick_two_level):
    a = logo(trained_conjugate, {"y": GROUPS}, num_samples=1000, seed=0)
    b = logo(quick_two_level, {"y": GROUPS}, num_samples=1000, seed=0)
    difference = elpd_difference(a, b)
    assert difference["elpd_diff"] == pytest.approx(a.elpd - b.elpd)
    table = az.compare({"a": a, "b": b}, round_to=12)
    worse = table.index[1]
    # ArviZ reports the worse model's elpd minus the best one's.
    assert table.loc[worse, "elpd_diff"] == pytest.approx(-abs(difference["elpd_diff"]), rel=1e-6)
    assert table.loc[worse, "dse"] == pytest.approx(difference["se"], rel=1e-6)


def test_logo_rejects_a_single_group_and_a_program_without_groups(trained_conjugate):
    with pytest.raises(am.AmortizeError, match="at least two instances"):
        logo(trained_conjugate, {"y": [np.array([0.1, 0.2])]})

    def no_groups(y=None):
        import numpyro
        import numpyro.distributions as dist

        mu = numpyro.sample("mu", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(mu, 1).expand([3]).to_event(1), obs=y)

    amortizer = am.compile(no_groups, data=["y"], sizes={})
    with pytest.raises(am.AmortizeError, match="needs groups"):
        logo(amortizer, {"y": np.zeros(3)})


def test_every_fold_reports_its_pareto_k_and_a_large_group_keeps_its_draws(trained_conjugate):
    # A group of many observations: its prior is a poor proposal for p(y_j | mu), its local
    # amortized posterior a good one. The exact elpd is known; the estimate must be within
    # the accuracy bound and every fold's k̂ reliable.
    rng = np.random.default_rng(5)
    groups = GROUPS[:3] + [rng.normal(0.7, cn.SIGMA, 6)]
    result = logo(trained_conjugate, {"y": groups}, num_samples=2000, seed=1)
    assert result.pareto_k.shape == (4,)
    assert np.all(result.pareto_k.values <= result.good_k)
    exact = exact_elpd(groups, 3)
    bound = max(abs(exact_elpd(groups, 3, s, k) - exact) for s in (-0.15, 0.15) for k in (0.85, 1.15))
    assert abs(result.elpd_i.values[3] - exact) <= bound + 0.05


def test_logo_scores_a_groups_responses_not_its_design_covariates():
    """Eight schools' sigma_j ~ Uniform(5, 20) is given, not predicted: LOGO's density of a school leaves
    out its log(1/15) (every fold's elpd was 2.7 too low, -52.4 in all against PSIS-LOO's -30.7)."""
    import jax

    from amortize.padded_program import padded_from_prepared
    from amortize.prepare import prepare_data
    from amortize.infer import make_latent_sampler
    from amortize.models import eight_schools as es
    from amortize.refine.weights import compiled_density
    from amortize.padded_program import covariate_names

    amortizer = am.compile(es.model, data=["y", "sigma"], sizes=es.SIZES).init(seed=0, pilot_size=64)
    graph, factorization = amortizer.graph, amortizer.factorization
    assert covariate_names(graph) == ("sigma",)
    prepared = prepare_data(graph, es.data())
    draws = make_latent_sampler(amortizer.network, amortizer.spec)(jax.random.key(0), prepared.data,
                                                                     prepared.masks, 16)
    values = {f: np.asarray(v[0]) for f, v in draws.values.items()}
    padded = padded_from_prepared(prepared, graph)
    joint = compiled_density(graph, factorization, padded, ("school",), None)(values)
    responses = compiled_density(graph, factorization, padded, ("school",), None, exclude=("sigma",))(values)
    # Equal up to float32 rounding of the terms the two sums hold (untrained draws: large terms).
    rounding = 16 * np.finfo(np.float32).eps * np.abs(np.asarray(joint["school"])).max()
    np.testing.assert_allclose(np.asarray(joint["school"]) - np.asarray(responses["school"]), -math.log(15.0),
                               atol=rounding)
    np.testing.assert_allclose(responses["outer"], joint["outer"], rtol=1e-6)
