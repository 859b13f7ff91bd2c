"""The Gaussian HMM's exact forward–backward marginals and marginal likelihood."""

import itertools

import numpy as np
from numpyro import handlers
from numpyro.infer.util import log_density

from amortize.models import gaussian_hmm as hmm


def _data(seed, steps=6):
    rng = np.random.default_rng(seed)
    count = rng.integers(2, hmm.MAX_REPLICATES + 1, size=steps)
    y = rng.normal(rng.choice([-1.0, 1.2], size=steps)[:, None], 1.0, size=(steps, hmm.MAX_REPLICATES))
    y = np.where(np.arange(hmm.MAX_REPLICATES) < count[:, None], y, 0.0)
    alpha = np.array([[0.8, 0.2], [0.35, 0.65]])
    mu = np.array([-1.0, 1.2])
    return y, count, alpha, mu


def test_forward_backward_matches_enumeration_of_every_path():
    y, count, alpha, mu = _data(0)
    filtered, smoothed, log_likelihood = hmm.forward_backward(y, count, alpha, mu)
    steps = len(y)
    exists = np.arange(hmm.MAX_REPLICATES) < count[:, None]
    paths, weights = [], []  # every one of the 2^T chains, with its log joint density
    for path in itertools.product([0, 1], repeat=steps):
        log_p = np.log(0.5) + sum(np.log(alpha[a, b]) for a, b in zip(path[:-1], path[1:]))
        log_p += sum(np.sum(-0.5 * (y[t][exists[t]] - mu[k]) ** 2 - 0.5 * np.log(2 * np.pi))
                     for t, k in enumerate(path))
        paths.append(path)
        weights.append(log_p)
    weights = np.array(weights)
    paths = np.array(paths)
    posterior = np.exp(weights - weights.max())
    posterior /= posterior.sum()
    np.testing.assert_allclose(smoothed[:, 1], (posterior[:, None] * paths).sum(0), atol=1e-10)
    # Filtering at t is smoothing of the series cut at t.
    for t in range(steps):
        _, cut, _ = hmm.forward_backward(y[:t + 1], count[:t + 1], alpha, mu)
        np.testing.assert_allclose(filtered[t], cut[-1], atol=1e-10)
    padded = np.sum(~exists) * (-np.log(1e-3) - 0.5 * np.log(2 * np.pi))
    total = weights.max() + np.log(np.exp(weights - weights.max()).sum()) + padded
    np.testing.assert_allclose(log_likelihood, total, rtol=1e-10)


def test_marginal_model_density_is_the_forward_algorithm():
    y, count, alpha, mu = _data(1)
    params = {"alpha": alpha, "mu": mu}
    log_joint, _ = log_density(hmm.marginal_model, (), {"n_unit": len(y), "y": y, "count": count}, params)
    prior = handlers.trace(handlers.substitute(hmm.marginal_model, params)).get_trace(
        n_unit=len(y), y=y, count=count)
    log_prior = sum(float(prior[n]["fn"].log_prob(prior[n]["value"]).sum()) for n in ("alpha", "mu"))
    log_counts = len(y) * np.log(1 / 4)
    _, _, exact = hmm.forward_backward(y, count, alpha, mu)
    np.testing.assert_allclose(float(log_joint), log_prior + log_counts + exact, rtol=1e-5)


def test_program_simulates_a_chain_with_padded_replicates():
    trace = handlers.trace(handlers.seed(hmm.model, 3)).get_trace(n_unit=12)
    z, y, count = (np.asarray(trace[n]["value"]) for n in ("z", "y", "count"))
    assert z.shape == (12,) and set(np.unique(z)) <= {0, 1}
    assert count.min() >= 2 and count.max() <= hmm.MAX_REPLICATES
    beyond = np.arange(hmm.MAX_REPLICATES) >= count[:, None]
    assert np.all(np.abs(y[beyond]) < 0.01)
    mu = np.asarray(trace["mu"]["value"])
    assert mu[0] < mu[1]
