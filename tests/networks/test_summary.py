"""Summary networks are invariant to instance order and ignore padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from amortize.networks import LevelSummary
from amortize.networks.summary import (Packed, count_features, masked_correlations, masked_extremes, masked_mean,
                                       masked_quantiles, masked_sd, quantile_levels)


@pytest.mark.parametrize("kind", ["deepset", "set_transformer"])
def test_pooling_is_permutation_invariant_and_ignores_padding(kind):
    net = LevelSummary(3, embed_dim=8, out_dim=5, width=16, depth=2, kind=kind, heads=2,
                       activation="silu", max_size=7, rngs=nnx.Rngs(0), data_features=2)
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


def test_masked_correlations_are_those_of_the_real_instances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)) * [1.0, 5.0, 0.2]
    x[..., 1] += 3.0 * x[..., 0]  # a positive correlation (0.51 in expectation)
    x[1, :, 2] = 4.0  # a feature without spread
    mask = np.array([[True] * 4 + [False] * 2, [True] * 6])
    got = np.asarray(masked_correlations(jnp.asarray(x), jnp.asarray(mask)))
    assert got.shape == (2, 3)
    rows, cols = np.triu_indices(3, 1)
    for b in range(2):
        real = x[b][mask[b]]
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.nan_to_num(np.corrcoef(real.T)[rows, cols])
        # The floor of 1e-3 in the variances shifts each value by about 1e-3 / variance.
        np.testing.assert_allclose(got[b], expected, atol=0.03)
    assert got[0, 0] > 0.5 and got[1, 0] > 0.5
    np.testing.assert_allclose(got[1, 1:], 0.0, atol=1e-6)


def test_summary_passes_the_data_correlations_to_the_parent_level():
    net = LevelSummary(3, embed_dim=4, out_dim=5, width=8, depth=1, kind="deepset", heads=1,
                       activation="silu", max_size=5, rngs=nnx.Rngs(0), data_features=2)
    assert net.out_features == 5 + 2 * 3 + 1
    x = jax.random.normal(jax.random.key(1), (3, 5, 3))
    mask = jnp.ones((3, 5), bool)
    pooled = net.pool(x, net.embed(x), mask)
    np.testing.assert_allclose(pooled[:, -1], masked_correlations(x[..., :2], mask)[:, 0], rtol=1e-6)


def test_masked_extremes_are_those_of_the_real_instances():
    x = jnp.array([[[1.0], [3.0], [-100.0]], [[2.0], [5.0], [7.0]], [[4.0], [-9.0], [9.0]]])
    mask = jnp.array([[True, True, False], [True, True, True], [False, False, False]])
    low, high = masked_extremes(x, mask)
    np.testing.assert_array_equal(np.asarray(low)[:, 0], [1.0, 2.0, 0.0])  # an empty set gives zeros
    np.testing.assert_array_equal(np.asarray(high)[:, 0], [3.0, 7.0, 0.0])


def test_extremes_pass_the_minimum_to_the_parent_and_ignore_padding():
    net = LevelSummary(2, embed_dim=4, out_dim=5, width=8, depth=1, kind="deepset", heads=1,
                       activation="silu", max_size=6, rngs=nnx.Rngs(0), data_features=2, extremes=True)
    assert net.out_features == 5 + 4 * 2 + 1  # mean, sd, min, max of both inputs; one correlation
    x = jax.random.normal(jax.random.key(1), (3, 6, 2))
    mask = jnp.array([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    pooled = np.asarray(net.pool(x, net.embed(x), mask))
    np.testing.assert_allclose(pooled[:, 5 + 2 * 2 + 1:5 + 2 * 2 + 1 + 2],
                               [np.asarray(x)[b][np.asarray(mask[b])].min(0) for b in range(3)], atol=1e-6)
    # Padded instances, however extreme, change nothing; neither does the order of the real ones.
    padded = x.at[1, 4:].set(-50.0).at[2, 1:].set(50.0)
    np.testing.assert_allclose(np.asarray(net.pool(padded, net.embed(padded), mask)), pooled, atol=1e-6)
    order = jnp.array([3, 0, 2, 1, 4, 5])
    shuffled = x.at[1].set(x[1][order])
    np.testing.assert_allclose(np.asarray(net.pool(shuffled, net.embed(shuffled), mask)), pooled, atol=1e-5)


def test_masked_quantiles_are_numpys_of_the_real_instances_padded_or_packed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 9, 2)).astype(np.float32)
    mask = np.array([[True] * 9, [True] * 4 + [False] * 5, [False] * 9])
    levels = np.asarray(quantile_levels(5))
    np.testing.assert_allclose(levels, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6], rtol=1e-6)
    quantiles = np.asarray(masked_quantiles(jnp.asarray(x), jnp.asarray(mask), 5))
    for b in range(2):  # feature-major: the 5 quantiles of feature 0, then of feature 1
        expected = np.concatenate([np.quantile(x[b, mask[b], f], levels) for f in range(2)])
        np.testing.assert_allclose(quantiles[b], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(quantiles[2], 0.0)  # an empty set
    # Packed: the same sets' real rows, shuffled across sets, followed by filler rows.
    rows = np.concatenate([x[0], x[1, :4]])
    segment = np.array([0] * 9 + [1] * 4)
    order = rng.permutation(len(rows))
    packed = Packed(jnp.asarray(np.concatenate([segment[order], [1, 0]])),
                    jnp.asarray(np.r_[np.ones(len(rows)), 0.0, 0.0], jnp.float32), 3)
    filled = np.concatenate([rows[order], np.full((2, 2), -1e3, np.float32)])
    np.testing.assert_allclose(np.asarray(masked_quantiles(jnp.asarray(filled), packed, 5)), quantiles, atol=1e-6)


def test_quantiles_of_the_own_data_pass_to_the_parent_level():
    net = LevelSummary(3, embed_dim=4, out_dim=5, width=8, depth=1, kind="deepset", heads=1,
                       activation="silu", max_size=8, rngs=nnx.Rngs(0), data_features=1, quantiles=4)
    assert net.out_features == 5 + 2 * 3 + 4  # mean and sd of all three inputs, 4 quantiles of the one datum
    x = jax.random.normal(jax.random.key(2), (2, 8, 3))
    mask = jnp.array([[True] * 8, [True] * 5 + [False] * 3])
    pooled = np.asarray(net.pool(x, net.embed(x), mask))
    levels = np.asarray(quantile_levels(4))
    for b in range(2):
        own = np.asarray(x)[b][np.asarray(mask[b]), 0]
        np.testing.assert_allclose(pooled[b, -4:], np.quantile(own, levels), atol=1e-6)


def test_quantiles_sharpen_a_mixtures_posterior_at_equal_steps():
    # The cause behind too-wide mixture posteriors (benchmarks/mixture_summaries.py): a mean-pooled
    # summary does not see how the data split into clusters. Same program, seed, steps and pilot
    # (hence the same standardization of θ): the paired held-out difference of log q(θ_true | y)
    # must favour the quantile features by more than three of its standard errors.
    import amortize as am
    from amortize.build import log_prob
    from amortize.models import gaussian_mixture
    from amortize.simulate import simulate

    def trained(quantiles):
        network = am.NetworkConfig(quantiles=quantiles)
        amortizer = am.compile(gaussian_mixture.marginal_model, data=["y"], sizes={"obs": (30, 120)},
                               network=network)
        amortizer.fit(steps=500, batch_size=64, seed=0, progress=False)
        return amortizer

    plain, sharp = trained(0), trained(8)
    held_out = simulate(jax.random.key(99), plain.graph, plain.factorization, 512)
    valid = np.asarray(held_out.valid)

    def log_q(amortizer):
        return np.asarray(log_prob(amortizer.network, amortizer.spec, held_out.latents, held_out.data,
                                   held_out.masks)["global"])[valid]

    difference = log_q(sharp) - log_q(plain)
    assert difference.mean() > 3 * difference.std() / np.sqrt(difference.size)
