"""Replaying the program on padded data: masks, arguments, likelihoods, predictive draws (no training)."""

import dataclasses

import jax
import numpy as np
import pytest
from scipy import stats

import amortize as am
from amortize.padded_program import padded_from_prepared
from amortize.prepare import prepare_data
from amortize.models import conjugate_normal as cn
from amortize.padded_program import (conditional_prior_moments, pointwise_log_likelihood, posterior_predictive,
                             program_arguments)

GROUPS = [np.array([0.4, 1.1]), np.array([-0.5, 0.1, 0.3, -0.2]), np.array([1.8])]


@pytest.fixture(scope="module")
def replayed():
    """The conjugate program on three ragged groups (2, 4, 1 observations: padded to 4), with draws
    of mu and theta set by hand."""
    amortizer = am.compile(cn.model, data=["y"], sizes={"group": (2, 5), "obs": (1, 6)})
    graph = amortizer.graph
    padded = padded_from_prepared(prepare_data(graph, {"y": GROUPS}), graph)
    mu = np.array([0.3, -0.2, 0.0])
    theta = np.array([[0.5, -0.1, 1.5], [0.2, 0.0, 1.0], [-1.0, 2.0, 0.1]])  # (draws, groups)
    return graph, dataclasses.replace(padded, latents={"mu": mu, "theta": theta}), mu, theta


def test_program_arguments_run_the_program_at_the_padded_sizes(replayed):
    graph, padded, _, _ = replayed
    arguments = program_arguments(graph, padded)
    assert arguments["n_group"] == 3 and arguments["n_obs"] == 4
    assert np.shape(arguments["y"]) == (3, 4)
    np.testing.assert_allclose(np.asarray(arguments["y"])[1], GROUPS[1])
    # Padded entries repeat the site's first real value (inside the support; masked in the program).
    np.testing.assert_allclose(np.asarray(arguments["y"])[2], [1.8, 0.4, 0.4, 0.4])
    assert "y" not in program_arguments(graph, padded, observed=False)


def test_pointwise_log_likelihood_scores_real_observations_and_masks_padding(replayed):
    graph, padded, _, theta = replayed
    values = np.asarray(pointwise_log_likelihood(graph, padded, jax.random.key(0))["y"])
    assert values.shape == (3, 3, 4)
    for s in range(3):
        for j, y in enumerate(GROUPS):
            np.testing.assert_allclose(values[s, j, :len(y)], stats.norm(theta[s, j], cn.SIGMA).logpdf(y),
                                       rtol=1e-5)
            np.testing.assert_array_equal(values[s, j, len(y):], 0.0)


def test_posterior_predictive_replicates_each_group_around_its_draw(replayed):
    graph, padded, _, _ = replayed
    draws = 4000
    theta = np.tile(np.array([[0.5, -0.1, 1.5]]), (draws, 1))
    many = dataclasses.replace(padded, latents={"mu": np.zeros(draws), "theta": theta})
    replicated = np.asarray(posterior_predictive(graph, many, jax.random.key(1))["y"])
    assert replicated.shape == (draws, 3, 4)
    # Each replicated observation is theta_j plus N(0, SIGMA) noise: the mean over draws is within
    # 4 Monte Carlo sds of theta_j, and the sd within 4 of its own standard error.
    np.testing.assert_array_less(np.abs(replicated.mean(axis=0) - theta[0][:, None]),
                                 4 * cn.SIGMA / np.sqrt(draws))
    np.testing.assert_array_less(np.abs(replicated.std(axis=0) - cn.SIGMA), 4 * cn.SIGMA / np.sqrt(2 * draws))


def test_conditional_prior_moments_are_the_population_distribution_given_each_draw(replayed):
    graph, padded, mu, _ = replayed
    mean, variance = conditional_prior_moments(graph, padded, ("theta",))["theta"]
    np.testing.assert_allclose(np.asarray(mean), np.repeat(mu[:, None], 3, axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(variance), cn.TAU**2, rtol=1e-6)
