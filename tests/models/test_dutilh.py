"""The HMM-EAM of the Dutilh case study: Wald densities, exact sampling, the forward algorithm, the data."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy import integrate, stats

from amortize.models import dutilh
from amortize.models._wald import mode_log_density
from tests.conftest import SHARED_DATA

DUTILH = SHARED_DATA / "dutilh2010_speed_accuracy_switching"
THETA = {"rho_11": 0.8, "rho_22": 0.9, "alpha_1": 0.6, "alpha_diff": 1.4, "nu_1": 5.0, "nu_21": 2.0,
         "nu_diff": 2.5, "tau": 0.15}


@pytest.mark.parametrize("threshold, drift", [(0.5, 5.5), (2.0, 2.5), (1.2, 0.4)])
def test_wald_density_survival_and_sampler_are_the_inverse_gaussian(threshold, drift):
    mean, shape = threshold / drift, threshold**2
    reference = stats.invgauss(mean / shape, scale=shape)  # scipy's parametrization of IG(mean, shape)
    t = np.array([0.05, 0.3, 0.9, 2.5])
    np.testing.assert_allclose(dutilh.wald_log_density(t, threshold, drift), reference.logpdf(t), rtol=2e-5)
    np.testing.assert_allclose(dutilh.wald_log_survival(t, threshold, drift), reference.logsf(t), rtol=1e-4,
                               atol=1e-6)
    assert dutilh.wald_log_density(-0.1, threshold, drift) == -np.inf
    x = np.asarray(dutilh.sample_wald(jax.random.key(0), jnp.full(20000, threshold), jnp.full(20000, drift)))
    assert stats.kstest(x, reference.cdf).pvalue > 1e-3


@pytest.mark.parametrize("state", [0, 1])
def test_both_modes_are_normalized_and_sampled_exactly(state):
    d = dutilh.SwitchingWald(state, 0.6, 5.0, 2.0, 2.0, 4.5, 0.15)
    mass = {}
    for response in (0, 1):
        def density(t, r=response):
            return float(jnp.exp(d.log_prob(jnp.array([t, r], jnp.float32))))
        with warnings.catch_warnings():  # float32 densities: quad cannot reach its own 1.5e-8 tolerance
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            mass[response] = integrate.quad(density, 0.15, np.inf, limit=200)[0]
    assert abs(mass[0] + mass[1] - 1.0) < 1e-4
    n = 40000
    draws = np.asarray(d.sample(jax.random.key(state), (n,)))
    assert draws[:, 0].min() > 0.15
    # P(correct): binomial sd at most 0.0025; 4 sds plus the quadrature's and float32's error.
    assert abs(draws[:, 1].mean() - mass[1]) < 4 * 0.0025 + 1e-3
    assert d.log_prob(jnp.array([0.1, 1.0])) == -np.inf  # faster than the non-decision time


def test_the_program_simulates_and_scores_its_chain():
    trace = handlers.trace(handlers.seed(dutilh.model, 0)).get_trace(n_trial=50)
    y, z = np.asarray(trace["y"]["value"]), np.asarray(trace["z"]["value"])
    assert y.shape == (50, 2) and z.shape == (50,)
    assert np.all(y[:, 0] > float(trace["tau"]["value"])) and set(np.unique(y[:, 1])) <= {0.0, 1.0}
    assert set(np.unique(z)) <= {0, 1}


def test_marginal_model_and_state_probabilities_sum_every_chain():
    steps = 6
    y = np.asarray(handlers.trace(handlers.seed(dutilh.model, 3)).get_trace(n_trial=steps)["y"]["value"])
    parameters = {k: jnp.asarray(v) for k, v in THETA.items()}
    # Brute force: the scan program's joint density at each of the 2^T chains.
    paths = np.array(list(itertools.product([0, 1], repeat=steps)))
    joint = np.array([float(log_density(dutilh.model, (steps,), {"y": jnp.asarray(y)},
                                        dict(parameters, z=jnp.asarray(path)))[0]) for path in paths])
    log_evidence = np.logaddexp.reduce(joint)  # log p(θ) + log p(y | θ)
    posterior = np.exp(joint - log_evidence)
    filtered, smoothed, log_likelihood = dutilh.state_probabilities(y, parameters)
    np.testing.assert_allclose(np.asarray(smoothed), posterior @ paths, atol=1e-5)
    log_prior = float(log_density(lambda: dutilh._parameters(dist.Exponential(5.0)), (), {}, parameters)[0])
    np.testing.assert_allclose(float(log_likelihood), log_evidence - log_prior, rtol=1e-5)
    # The program for NUTS: tau ~ Uniform(0, fastest) times the Exponential density, so its density
    # is the joint's with the chain summed out, less log(fastest): the same posterior.
    marginal = float(log_density(dutilh.marginal_model, (), {"y": jnp.asarray(y)}, parameters)[0])
    np.testing.assert_allclose(marginal, log_evidence - np.log(y[:, 0].min()), rtol=1e-5)
    # Filtering at the last step is smoothing there.
    np.testing.assert_allclose(np.asarray(filtered)[-1], np.asarray(smoothed)[-1], atol=1e-6)


def test_mode_densities_order_and_bad_responses():
    value = jnp.array([[0.5, 1.0], [0.5, 0.0]])
    modes = np.asarray(mode_log_density(value, 0.6, 5.0, 2.0, 2.0, 4.5, 0.15))
    assert modes.shape == (2, 2)
    assert modes[0, 0] == modes[1, 0]  # guessing: the response is a coin flip
    assert modes[0, 1] > modes[1, 1]  # controlled: the correct accumulator is faster
    d = dutilh.SwitchingWald(1, 0.6, 5.0, 2.0, 2.0, 4.5, 0.15, validate_args=True)
    with pytest.raises(ValueError, match="Response times must be above 0"):
        d.log_prob(jnp.array([-0.2, 1.0]))
    with pytest.raises(ValueError, match="Responses must be 1"):
        d.log_prob(jnp.array([0.4, 2.0]))


@pytest.mark.skipif(not DUTILH.exists(), reason=f"shared data folder {DUTILH} is absent")
def test_load_reads_the_first_400_trials_per_participant():
    folder = DUTILH
    data = dutilh.load(folder)
    assert sorted(data) == list("ABCDEFGHIJK")
    assert data["A"]["y"].shape == (400, 2) and data["C"]["y"].shape == (333, 2)
    assert data["A"]["pacc"].shape == (400,)
    assert np.all(data["B"]["y"][:, 0] > 0) and set(np.unique(data["B"]["y"][:, 1])) == {0.0, 1.0}
    with pytest.raises(FileNotFoundError, match="dutilh2010"):
        dutilh.load(folder.parent / "missing")


def test_bad_responses_are_refused_naming_the_site():
    import amortize as am
    from amortize.prepare import prepare_data

    graph = am.compile(dutilh.model, data=["y"], sizes=dutilh.SIZES).graph
    good = np.column_stack([np.full(350, 0.4), np.ones(350)]).astype(np.float32)
    prepare_data(graph, {"y": good})
    for bad, what in [((0, 0), -0.1), ((3, 1), 2.0)]:
        y = good.copy()
        y[bad] = what
        with pytest.raises(am.DataError, match="site `y`.*outside the support"):
            prepare_data(graph, {"y": y})
