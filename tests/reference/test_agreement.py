"""Per-parameter comparison of two posteriors."""

import numpy as np
import pytest

from amortize.reference import compare_posteriors, mmd, summarize_comparison
from tests.conftest import exact_conjugate_tree

GROUPS = [np.array([0.4, 1.1]), np.array([-0.5, 0.1, 0.3]), np.array([1.8])]


def test_identical_posteriors_agree_and_a_shift_is_measured_in_reference_sds():
    reference = exact_conjugate_tree(GROUPS, 4000, seed=0)
    same = exact_conjugate_tree(GROUPS, 4000, seed=1)
    table = compare_posteriors(same, reference, max_draws=1000)
    assert list(table.index) == ["mu", "theta[0]", "theta[1]", "theta[2]"]
    # Two independent samples of n = 4000 draws each (moments use every draw; only the MMD
    # subsamples): the mean difference has sd sqrt(2 / n) reference sds, the sd ratio a
    # relative sd of about sqrt(1 / n).
    assert table["mean_diff_sd"].abs().max() < 4 * np.sqrt(2 / 4000)
    assert (table["sd_ratio"] - 1).abs().max() < 4 * np.sqrt(1 / 4000)
    assert table["overlap_95"].min() > 0.9
    assert table["mmd"].max() < 0.1

    shifted = reference.copy()
    posterior = shifted["posterior"].to_dataset()
    shifted["posterior"] = posterior.assign(mu=posterior["mu"] + posterior["mu"].std())
    moved = compare_posteriors(shifted, reference)  # moments from every draw: the shift is exactly one sd
    assert moved.loc["mu", "mean_diff_sd"] == pytest.approx(1.0, rel=1e-6)
    assert moved.loc["mu", "sd_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert moved.loc["mu", "mmd"] > 0.3
    summary = summarize_comparison(moved)
    assert not summary.loc["mu", "within_tolerance"] and summary.loc["theta", "within_tolerance"]


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_gap():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=500), rng.normal(size=500)
    assert mmd(x, y) < 0.1
    assert mmd(x, y + 1.0) > mmd(x, y + 0.5) > 0.2


def test_an_unconverged_reference_travels_with_the_table():
    reference = exact_conjugate_tree(GROUPS, 400, seed=0)
    reference["posterior"].attrs.update(converged=0, max_rhat=1.2, divergences=3)
    table = compare_posteriors(exact_conjugate_tree(GROUPS, 400, seed=1), reference)
    assert table.attrs["reference_converged"] is False
    assert table.attrs["reference_max_rhat"] == 1.2
    assert not table["reference_converged"].any()
