"""Hidden Markov chains along an ordered level: filtering, smoothing and joint draws against forward–backward."""

import numpy as np
import pytest
from numpyro import handlers

import amortize as am
from amortize.models import gaussian_hmm as hmm

SIZES = {"unit": (10, 30)}
NETWORK = am.NetworkConfig(summary_width=64)


@pytest.fixture(scope="module")
def chain():
    amortizer = am.compile(hmm.model, data=["y", "count"], sizes=SIZES, network=NETWORK)
    amortizer.fit(steps=10000, batch_size=64, seed=0, progress=False)
    return amortizer


def _simulated(seed, units):
    trace = handlers.trace(handlers.seed(hmm.model, seed)).get_trace(n_unit=units)
    return {"y": np.asarray(trace["y"]["value"]), "count": np.asarray(trace["count"]["value"])}


def _exact(data, alpha, mu):
    """Exact filtered, smoothed and pairwise p(z_t = 1, z_t+1 = 1) marginals given one draw's parameters."""
    filtered, smoothed, _ = hmm.forward_backward(data["y"], data["count"], alpha, mu)
    predicted = filtered[:-1] @ alpha
    pairwise = filtered[:-1, 1] * alpha[1, 1] * smoothed[1:, 1] / predicted[:, 1]
    return filtered[:, 1], smoothed[:, 1], pairwise


def test_the_chain_is_one_markov_factor():
    amortizer = am.compile(hmm.model, data=["y", "count"], sizes=SIZES)
    assert str(amortizer.factorization) == "p(alpha, mu | y, count) · p(z[unit] | alpha, mu, y, count)"
    assert amortizer.factorization["z"].markov


def test_filtering_and_smoothing_match_forward_backward(chain):
    # Given each draw's (alpha, mu), forward–backward gives the exact marginals:
    # the learned ones must be within 0.03 on average, on chains of several lengths.
    errors = {"filtered": [], "smoothed": []}
    for seed, units in [(101, 30), (102, 22), (103, 12)]:
        data = _simulated(seed, units)
        tree = chain.sample(data, num_samples=200, seed=seed)
        alpha = tree.posterior["alpha"].values.reshape(200, 2, 2)
        mu = tree.posterior["mu"].values.reshape(200, 2)
        filtered = tree.indicator_filtered_probabilities["z"].values.reshape(200, units, 2)[..., 1]
        smoothed = tree.indicator_probabilities["z"].values.reshape(200, units, 2)[..., 1]
        for s in range(0, 200, 5):
            exact_filtered, exact_smoothed, _ = _exact(data, alpha[s], mu[s])
            errors["filtered"].append(np.mean(np.abs(filtered[s] - exact_filtered)))
            errors["smoothed"].append(np.mean(np.abs(smoothed[s] - exact_smoothed)))
    assert np.mean(errors["filtered"]) < 0.03
    assert np.mean(errors["smoothed"]) < 0.03


def test_joint_draws_follow_the_exact_pairwise_marginals(chain):
    # Backward sampling draws whole chains: the share of draws with z_t = z_t+1 = 1
    # must match the mean over draws of the exact pairwise probability (binomial
    # error of 1000 draws: sd at most 0.016; 4 sds allowed per pair).
    data = _simulated(7, 25)
    tree = chain.sample(data, num_samples=1000, seed=3)
    z = tree.posterior["z"].values.reshape(1000, 25)
    alpha = tree.posterior["alpha"].values.reshape(1000, 2, 2)
    mu = tree.posterior["mu"].values.reshape(1000, 2)
    pairwise = np.mean([_exact(data, alpha[s], mu[s])[2] for s in range(1000)], axis=0)
    empirical = np.mean((z[:, :-1] == 1) & (z[:, 1:] == 1), axis=0)
    np.testing.assert_array_less(np.abs(empirical - pairwise), 4 * np.sqrt(0.25 / 1000) + 0.03)


def test_output_layout_and_bad_input(chain):
    data = _simulated(9, 14)
    tree = chain.sample(data, num_samples=40, seed=0)
    assert tree.posterior["z"].dims == ("chain", "draw", "unit")
    assert np.issubdtype(tree.posterior["z"].dtype, np.integer)
    for group in ("indicator_probabilities", "indicator_filtered_probabilities"):
        assert tree[group]["z"].dims == ("chain", "draw", "unit", "z_class")
        np.testing.assert_allclose(tree[group]["z"].sum("z_class"), 1.0, atol=1e-5)
    # The last step's filtered and smoothed marginals are the same distribution.
    np.testing.assert_allclose(tree.indicator_filtered_probabilities["z"].isel(unit=-1),
                               tree.indicator_probabilities["z"].isel(unit=-1), atol=1e-5)
    with pytest.raises(am.DataError, match="unit"):
        chain.sample({"y": data["y"], "count": data["count"][:-1]}, num_samples=12)


def test_psis_sums_the_chain_out_and_draws_it_exactly(chain):
    # refine="psis" weighs the parameters with the chain summed out by the forward algorithm, then
    # draws each chain from its exact conditional: the smoothed and filtered marginals it returns are
    # forward–backward's at every draw (float32 round-off only), and the certificate says so.
    data = _simulated(11, 20)
    tree = chain.sample(data, num_samples=400, seed=5, refine="psis")
    certificate = am.certificate(tree)
    assert certificate.method == "importance, chain summed out"
    assert np.isfinite(certificate.khat) and certificate.num_draws == 4000
    alpha = tree.posterior["alpha"].values.reshape(400, 2, 2)
    mu = tree.posterior["mu"].values.reshape(400, 2)
    filtered = tree.indicator_filtered_probabilities["z"].values.reshape(400, 20, 2)[..., 1]
    smoothed = tree.indicator_probabilities["z"].values.reshape(400, 20, 2)[..., 1]
    for s in range(0, 400, 20):
        exact_filtered, exact_smoothed, _ = _exact(data, alpha[s], mu[s])
        np.testing.assert_allclose(filtered[s], exact_filtered, atol=1e-4)
        np.testing.assert_allclose(smoothed[s], exact_smoothed, atol=1e-4)


def test_refine_nuts_runs_on_the_parameters_with_the_chain_summed_out(chain):
    # NUTS on (alpha, mu) with the chain summed out by the forward algorithm, warm-started from the
    # amortizer, against a cold NUTS run on the program's marginal twin (the chain summed out by
    # hand). Both have effective sample sizes near 1000 or more: the difference of two means has an
    # sd below 0.045 posterior sds, and an sd ratio is within about 0.03 of 1; 5 sds allowed each.
    import jax
    from numpyro.infer import MCMC, NUTS

    data = _simulated(13, 24)
    tree = chain.sample(data, num_samples=2000, seed=2, refine="nuts")
    attrs = tree.posterior.attrs
    assert attrs["refine"] == "nuts" and attrs["converged"] == 1, attrs
    cold = MCMC(NUTS(hmm.marginal_model), num_warmup=500, num_samples=1000, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    cold.run(jax.random.key(0), n_unit=24, **data)
    reference = cold.get_samples()
    for name in ("alpha", "mu"):
        x = tree.posterior[name].values.reshape(2000, -1)
        r = np.asarray(reference[name]).reshape(4000, -1)
        np.testing.assert_array_less(np.abs(x.mean(0) - r.mean(0)) / r.std(0), 0.25)
        np.testing.assert_array_less(np.abs(x.std(0) / r.std(0) - 1), 0.15)
    # Each chain is drawn exactly given its NUTS draw: the marginals are forward–backward's.
    alpha = tree.posterior["alpha"].values.reshape(2000, 2, 2)
    mu = tree.posterior["mu"].values.reshape(2000, 2)
    smoothed = tree.indicator_probabilities["z"].values.reshape(2000, 24, 2)[..., 1]
    for s in range(0, 2000, 200):
        np.testing.assert_allclose(smoothed[s], _exact(data, alpha[s], mu[s])[1], atol=1e-4)
