"""Summary networks are invariant to instance order and ignore padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from amortize.networks import LevelSummary
from amortize.networks.summary import count_features, masked_mean, masked_sd


@pytest.mark.parametrize("kind", ["deepset", "set_transformer"])
def test_pooling_is_permutation_invariant_and_ignores_padding(kind):
    net = LevelSummary(3, embed_dim=8, out_dim=5, width=16, depth=2, kind=kind, heads=2,
                       activation="silu", max_size=7, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 7, 3))
    mask = jnp.array([[True] * 4 + [False] * 3, [True] * 7])
    pooled = net.pool(x, net.embed(x), mask)
    perm = jnp.array([2, 0, 3, 1, 4, 5, 6])  # permutes the real instances of the first set
    permuted = net.pool(x[:, perm], net.embed(x[:, perm]), mask[:, perm])
    np.testing.assert_allclose(pooled, permuted, rtol=1e-5, atol=1e-5)
    garbage = x.at[0, 4:].set(1e3)  # padded values must not matter
    np.testing.assert_allclose(net.pool(garbage, net.embed(garbage), mask), pooled, rtol=1e-5, atol=1e-5)


def test_count_features_give_back_the_number_of_instances():
    mask = jnp.array([[True, True, False], [False, False, False], [True, True, True]])
    features = np.asarray(count_features(mask))
    np.testing.assert_allclose(features[:, 0], np.log1p([2, 0, 3]), rtol=1e-6)
    np.testing.assert_allclose(features[:, 1], [2 ** -0.5, 0.0, 3 ** -0.5], rtol=1e-6)
    np.testing.assert_allclose(masked_mean(jnp.ones((3, 3, 1)), mask)[:, 0], [1.0, 0.0, 1.0])


def test_masked_sd_is_the_spread_of_the_real_instances():
    x = jnp.array([[[1.0], [3.0], [100.0]], [[2.0], [5.0], [7.0]], [[4.0], [-9.0], [9.0]]])
    mask = jnp.array([[True, True, False], [True, True, True], [True, False, False]])
    expected = [1.0, np.std([2.0, 5.0, 7.0]), 0.0]
    np.testing.assert_allclose(np.asarray(masked_sd(x, mask))[:, 0], expected, atol=2e-3)
