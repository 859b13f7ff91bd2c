"""Pareto-smoothed importance sampling: k̂ against weights of known tail index, ESS, resampling."""

import numpy as np
import pytest

from amortize.refine.pareto import khat_threshold, psis, relative_ess, resample


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_khat_recovers_the_tail_index_of_pareto_weights(alpha):
    # Weights w ~ Pareto(alpha) have a generalized Pareto tail with shape k = 1 / alpha.
    # Mean of 20 fits of 4000 draws each; the spread of one fit is about 0.1-0.2
    # (its tail holds 190 draws), so the mean is within 0.1 unless the fit is biased.
    rng = np.random.default_rng(0)
    fits = [psis(np.log(rng.pareto(alpha, 4000) + 1.0))[1] for _ in range(20)]
    assert abs(np.mean(fits) - 1.0 / alpha) < 0.1


def test_light_tailed_weights_have_a_small_khat_and_normalized_smoothed_weights():
    rng = np.random.default_rng(1)
    smoothed, khat = psis(0.5 * rng.normal(size=4000))  # log-normal weights: every moment exists
    assert khat < 0.5
    assert np.isclose(np.exp(smoothed).sum(), 1.0)


def test_smoothing_never_raises_a_weight_above_the_largest_raw_weight():
    rng = np.random.default_rng(2)
    raw = np.log(rng.pareto(0.8, 2000) + 1.0)
    smoothed, _ = psis(raw)
    # Only the tail is replaced, so the median weight is a common reference point.
    assert np.max(smoothed) - np.median(smoothed) <= np.max(raw) - np.median(raw) + 1e-9


def test_degenerate_weights_give_an_infinite_khat():
    lw = np.full(1000, -np.inf)
    lw[:3] = 0.0
    assert psis(lw)[1] == np.inf
    assert psis(np.full(1000, np.nan))[1] == np.inf


def test_relative_ess_of_equal_and_of_one_dominant_weight():
    assert relative_ess(np.zeros(50)) == pytest.approx(1.0)
    lw = np.full(50, -np.inf)
    lw[7] = 3.0
    assert relative_ess(lw) == pytest.approx(1 / 50)


def test_systematic_resampling_reproduces_the_weights():
    rng = np.random.default_rng(3)
    weights = np.array([0.1, 0.2, 0.7])
    counts = np.bincount(resample(rng, np.log(weights), 10_000), minlength=3)
    # Systematic resampling: each count is within one of size × weight.
    assert np.all(np.abs(counts - 10_000 * weights) <= 1)


def test_threshold_depends_on_the_number_of_draws():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(100_000) == pytest.approx(0.7)
