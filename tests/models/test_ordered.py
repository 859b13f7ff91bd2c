"""The ordered-normal prior of the bundled mixture programs."""

import jax
import numpy as np
from numpyro.distributions import Normal

from amortize.models._ordered import OrderedNormal


def test_draws_are_ordered_and_follow_the_restricted_normal():
    loc, scale = np.array([-0.5, 0.0, 0.8]), 1.2
    draws = np.asarray(OrderedNormal(loc, scale).sample(jax.random.key(0), (20000,)))
    assert draws.shape == (20000, 3) and np.all(np.diff(draws, axis=-1) > 0)
    # Reference: independent normals kept when they happen to be ordered.
    raw = np.random.default_rng(1).normal(loc, scale, size=(400000, 3))
    kept = raw[np.all(np.diff(raw, axis=-1) > 0, axis=-1)]
    standard_error = kept.std(0) * np.sqrt(1 / len(draws) + 1 / len(kept))
    np.testing.assert_array_less(np.abs(draws.mean(0) - kept.mean(0)), 4 * standard_error)
    np.testing.assert_allclose(draws.std(0), kept.std(0), rtol=0.04)


def test_log_prob_is_the_normal_density_on_the_ordered_region():
    value = np.array([-1.0, 0.3])
    expected = Normal(np.array([-1.5, 1.5]), 1.0).log_prob(value).sum()
    np.testing.assert_allclose(OrderedNormal(np.array([-1.5, 1.5]), 1.0).log_prob(value), expected, rtol=1e-6)
