"""Data unlike the training simulations are flagged by their distance in summary space."""

import warnings

import jax
import numpy as np
import pytest

import amortize as am
from amortize.misspecification import QUANTILE
from amortize.simulate import simulate_in_chunks


def test_data_from_the_program_pass_and_data_far_outside_warn(quick_two_level):
    _, data = quick_two_level.simulate({"group": 8, "obs": 5}, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", am.AmortizationGapWarning)
        tree = quick_two_level.sample(data, 200, seed=0, certify=False)
    attrs = tree["posterior"].attrs
    assert attrs["summary_distance"] <= attrs["summary_threshold"]
    # The README's trap: the same data in other units (y × 1000) gave infinite draws without a word.
    with pytest.warns(am.AmortizationGapWarning, match=r"unlike the training simulations.*outside the "
                      r"simulations: y: mean .*\(0.1% to 99.9% of simulations.*y: sd"):
        far = quick_two_level.sample({"y": data["y"] * 1000}, 200, seed=0, certify=False)
    assert far["posterior"].attrs["summary_distance"] > far["posterior"].attrs["summary_threshold"]


def test_the_threshold_holds_its_quantile_on_fresh_simulations(quick_two_level):
    # Data sets simulated from the program exceed the threshold with probability 1 − QUANTILE = 0.005.
    # With 1000 fresh ones, the binomial sd of the share is 0.0022, and the threshold, a quantile of
    # 1024 held-out distances, moves the true exceedance probability by about as much: 4 combined sds.
    check, summarize = quick_two_level.summary_check()
    simulation = simulate_in_chunks(jax.random.key(777), quick_two_level.graph, quick_two_level.factorization,
                                    1000)
    distances = check.distance(summarize(simulation.data, simulation.masks))[np.asarray(simulation.valid)]
    share = float(np.mean(distances > check.threshold))
    assert share < (1 - QUANTILE) + 4 * np.hypot(0.0022, 0.0022)
    assert check.threshold > 0 and check.num_simulations > 2000 * 0.95
