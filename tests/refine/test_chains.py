"""A hidden Markov chain summed out of the importance weights, against enumeration of every chain."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan

import amortize as am
from amortize.padded_program import padded_from_prepared
from amortize.prepare import prepare_data
from amortize.models import gaussian_hmm as hmm
from amortize.refine.chains import (chain_density_function, draw_chains, sum_out_chain, summable_chain,
                                    summed_log_density)
from amortize.refine.density import log_density_function
from amortize.refine.weights import importance

STEPS = 5
DRAWS = 6


def _second_order(n_unit, y=None):
    """Not a first-order HMM: each emission also depends on the previous state."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))

    def step(previous, y_t):
        z = numpyro.sample("z", dist.Categorical(jnp.array([0.5, 0.5])))
        numpyro.sample("y", dist.Normal(mu + 2.0 * z + jnp.maximum(previous, 0), 1.0), obs=y_t)
        return z, None

    scan(step, jnp.array(-1), y, length=n_unit)


def _setup(model, data, sizes, amortizer=None):
    if amortizer is None:
        amortizer = am.compile(model, data=list(data), sizes=sizes)
        amortizer.fit(steps=20, batch_size=8, seed=0, progress=False)  # barely trained: any q will do
    prepared = prepare_data(amortizer.graph, data)
    padded = padded_from_prepared(prepared, amortizer.graph)
    draws = amortizer.latent_sampler()(jax.random.key(0), prepared.data, prepared.masks, DRAWS)
    values = {f: np.asarray(v[0]) for f, v in draws.values.items()}
    chain = summable_chain(amortizer.graph, amortizer.factorization)
    device = ({n: jnp.asarray(v, jnp.float32) for n, v in padded.data.items()},
              {p: jnp.asarray(m) for p, m in padded.masks.items()})
    return amortizer, prepared, padded, values, chain, device


def _hmm_data():
    y, count = np.zeros((STEPS, hmm.MAX_REPLICATES), np.float32), np.array([2, 5, 3, 4, 2])
    rng = np.random.default_rng(1)
    for t, c in enumerate(count):
        y[t, :c] = rng.normal([-1.5, 1.5][t % 2], 1.0, size=c)
    return {"y": y, "count": count}


@pytest.fixture(scope="module")
def short_hmm():
    amortizer = am.compile(hmm.model, data=["y", "count"], sizes={"unit": (STEPS, STEPS)})
    amortizer.fit(steps=20, batch_size=8, seed=0, progress=False)  # barely trained: any q will do
    return amortizer


def test_summed_out_chain_matches_enumeration_of_every_chain(short_hmm):
    amortizer, _, padded, values, chain, (data, masks) = _setup(hmm.model, _hmm_data(), None, short_hmm)
    graph, factorization = amortizer.graph, amortizer.factorization
    assert chain is not None and chain.name == "z"
    terms = chain_density_function(graph, factorization, padded.sizes, chain)
    summed = sum_out_chain(lambda v: terms({f: jnp.asarray(x) for f, x in v.items()}, data, masks), values, chain,
                           np.ones(STEPS, bool))
    assert summed is not None
    # Brute force: the program's own joint density at each of the 2^T chains, for each draw of the parameters.
    density = log_density_function(graph, factorization, padded.sizes, ())
    paths = np.array(list(itertools.product([0, 1], repeat=STEPS)))
    joint = np.empty((DRAWS, len(paths)))
    for i, path in enumerate(paths):
        vs = dict(values)
        vs["z"] = np.broadcast_to(path[None, :, None].astype(np.float32), values["z"].shape)
        joint[:, i] = np.asarray(density({f: jnp.asarray(x) for f, x in vs.items()}, data, masks)["outer"])
    log_p = np.logaddexp.reduce(joint, axis=1)
    np.testing.assert_allclose(summed.log_p, log_p, rtol=1e-5, atol=1e-4)

    # The differentiable version NUTS runs on gives the same numbers, and finite gradients.
    differentiable = summed_log_density(graph, factorization, padded.sizes, chain)
    others = {f: jnp.asarray(v) for f, v in values.items() if f != "z"}
    for i in range(DRAWS):
        one = {f: v[i] for f, v in others.items()}
        np.testing.assert_allclose(float(differentiable(one, data, masks)), log_p[i], rtol=1e-5, atol=1e-4)
    gradient = jax.grad(lambda v: differentiable(v, data, masks))({f: v[0] for f, v in others.items()})
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(gradient))

    posterior = np.exp(joint - log_p[:, None])  # (draws, paths)
    states, filtered, smoothed = draw_chains(np.random.default_rng(0), summed, np.arange(DRAWS))
    np.testing.assert_allclose(smoothed[..., 1], posterior @ paths, atol=1e-5)
    np.testing.assert_allclose(filtered.sum(-1), 1.0, atol=1e-6)
    # Joint draws of whole chains at one parameter draw: the frequency of every chain against its
    # exact probability (binomial sd at most 0.5 / sqrt(n); 5 sds allowed).
    n = 20000
    many = draw_chains(np.random.default_rng(1), summed, np.zeros(n, int))[0]
    codes = many @ (2 ** np.arange(STEPS)[::-1])
    frequency = np.bincount(codes, minlength=len(paths)) / n
    np.testing.assert_array_less(np.abs(frequency - posterior[0]), 5 * np.sqrt(posterior[0] * (1 - posterior[0]) / n)
                                 + 1e-3)


def test_a_program_that_is_not_a_first_order_hmm_is_not_summed_out():
    y = np.array([0.3, 2.1, 2.9, -0.4, 1.0], np.float32)
    amortizer, prepared, padded, values, chain, (data, masks) = _setup(_second_order, {"y": y},
                                                                       {"unit": (STEPS, STEPS)})
    assert chain is not None  # structurally a candidate: the check must catch it
    terms = chain_density_function(amortizer.graph, amortizer.factorization, padded.sizes, chain)
    assert sum_out_chain(lambda v: terms({f: jnp.asarray(x) for f, x in v.items()}, data, masks), values, chain,
                         np.ones(STEPS, bool)) is None
    result = importance(amortizer.latent_sampler(), amortizer.graph, amortizer.factorization, prepared,
                        jax.random.key(1), num_draws=128)
    assert result.certificate.method == "importance"


def test_certificate_sums_the_chain_out(short_hmm):
    data = _hmm_data()
    amortizer = short_hmm
    with pytest.warns(am.CertificateWarning, match="training longer"):  # an untrained q, and no NUTS advice
        tree = amortizer.sample(data, num_samples=128, seed=0)
    certificate = am.certificate(tree)
    assert certificate.method == "importance, chain summed out"
    assert np.isfinite(certificate.khat) and np.isfinite(certificate.joint_khat)
