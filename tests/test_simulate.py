"""Simulation at the largest sizes with ragged masks, and packing sites to vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from amortize.graph import build_graph, factorize
from amortize.simulate import draw_masks, from_canonical, pack_factor, simulate, to_canonical, unpack_factor
from tests.conftest import three_level, two_level
from tests.graph.test_factorize import several_latents, vector_latents


def test_canonical_layout_round_trips_for_auto_dims():
    graph = build_graph(several_latents, ["y", "x"], {"group": (2, 4), "obs": (1, 3)})
    site = graph.sites["y"]
    program = jnp.arange(12.0).reshape(3, 4)  # (obs, group) as NumPyro lays it out
    canonical = to_canonical(program, site)
    assert canonical.shape == (4, 3)
    np.testing.assert_array_equal(canonical, program.T)
    np.testing.assert_array_equal(from_canonical(canonical, site), program)
    draws = jnp.stack([canonical, canonical + 1])  # a leading draws axis stays in front
    assert from_canonical(draws, site).shape == (2, 3, 4)


def test_masks_respect_ranges_and_nesting():
    graph = build_graph(three_level, ["y"], {"region": (2, 5), "county": (1, 4), "house": (3, 6)})
    masks = draw_masks(jax.random.key(0), graph, 500)
    region, county, house = (np.asarray(masks[p]) for p in ("region", "county", "house"))
    assert region.shape == (500, 5) and county.shape == (500, 5, 4) and house.shape == (500, 5, 4, 6)
    n_region = region.sum(1)
    assert n_region.min() == 2 and n_region.max() == 5
    n_county = county.sum(2)[region]
    assert n_county.min() == 1 and n_county.max() == 4
    n_house = house.sum(3)[county]
    assert n_house.min() == 3 and n_house.max() == 6
    assert not county[~region].any() and not house[~county].any()
    # instances are a prefix: masks never have holes
    assert np.all(np.diff(house.astype(int), axis=-1) <= 0)


def test_simulation_shapes_and_zero_padding():
    graph = build_graph(two_level, ["y"], {"group": (2, 7), "obs": (1, 5)})
    sim = jax.jit(lambda k: simulate(k, graph, factorize(graph), 16))(jax.random.key(1))
    assert sim.latents["global"].shape == (16, 3)
    assert sim.latents["group"].shape == (16, 7, 1)
    assert sim.data["y"].shape == (16, 7, 5, 1)
    assert sim.valid.all()
    mask = np.asarray(sim.masks["obs"])
    assert np.all(np.asarray(sim.data["y"])[~mask] == 0.0)
    assert np.all(np.asarray(sim.latents["group"])[~np.asarray(sim.masks["group"])] == 0.0)


def test_simulations_follow_the_program():
    # y | theta, sigma ~ Normal: the standardized residuals of the simulated data are N(0, 1).
    graph = build_graph(two_level, ["y"], {"group": (5, 5), "obs": (20, 20)})
    sim = simulate(jax.random.key(2), graph, factorize(graph), 400)
    mu, tau, sigma = (np.exp(x) if i else x for i, x in enumerate(np.asarray(sim.latents["global"]).T))
    theta = np.asarray(sim.latents["group"])[..., 0]
    y = np.asarray(sim.data["y"])[..., 0]
    z = (y - theta[:, :, None]) / sigma[:, None, None]
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 0.02
    z_theta = (theta - mu[:, None]) / tau[:, None]
    assert abs(z_theta.std() - 1) < 0.05


def test_invalid_simulations_are_flagged():
    def model(n_obs, y=None):
        scale = numpyro.sample("scale", dist.Normal(0, 1))
        with numpyro.plate("obs", n_obs):  # sqrt of a negative scale: NaN data
            numpyro.sample("y", dist.Normal(0, jnp.sqrt(scale)), obs=y)

    graph = build_graph(model, ["y"], {"obs": (1, 3)})
    sim = simulate(jax.random.key(0), graph, factorize(graph), 200)
    negative = np.asarray(sim.latents["global"])[:, 0] < 0
    np.testing.assert_array_equal(np.asarray(sim.valid), ~negative)
    assert np.isfinite(np.asarray(sim.data["y"])).all()


@pytest.mark.parametrize("factor_name", ["global", "group"])
def test_pack_and_unpack_are_inverse_for_constrained_sites(factor_name):
    graph = build_graph(vector_latents, ["y"], {"group": (2, 3), "obs": (1, 2)})
    factor = factorize(graph)[factor_name]
    sim = simulate(jax.random.key(3), graph, factorize(graph), 8)
    packed = sim.latents[factor_name]
    values = unpack_factor(packed, factor, graph)
    if factor_name == "global":
        np.testing.assert_allclose(values["weights"].sum(-1), 1.0, rtol=1e-5)
        corr = values["corr"] @ jnp.swapaxes(values["corr"], -1, -2)
        np.testing.assert_allclose(jnp.diagonal(corr, axis1=-2, axis2=-1), 1.0, rtol=1e-5)
    else:
        assert np.all(np.diff(np.asarray(values["cuts"]), axis=-1) > 0)
    np.testing.assert_allclose(pack_factor(values, factor, graph), packed, rtol=1e-4, atol=1e-5)


def test_balanced_and_ragged_designs_are_both_drawn():
    graph = build_graph(two_level, ["y"], {"group": (10, 10), "obs": (1, 10)})
    counts = np.asarray(draw_masks(jax.random.key(5), graph, 4000)["obs"]).sum(-1)  # (sets, groups)
    balanced = (counts == counts[:, :1]).all(axis=1)
    # A third of the sets draw a sub-range [lo, hi]; lo == hi has probability 1/10
    # for 10 values: 1/30 in all (sd 0.003 over 4000 sets).
    assert 0.025 < balanced.mean() < 0.045
    assert np.mean((counts == 1).all(axis=1)) > 0.0015  # ten groups of one observation (1/300)
    assert np.mean(counts.max(1) - counts.min(1) >= 8) > 0.25  # and strongly unbalanced sets too


def test_skewed_designs_with_many_small_groups_are_drawn():
    # Observational data often have many small groups and a few large ones
    # (radon). The log-uniform third of the sets makes such designs common:
    # about 0.18 of all sets have a median group of at most 10 and a group of 50
    # or more, while uniform sizes on 1..120 almost never do.
    graph = build_graph(two_level, ["y"], {"group": (10, 10), "obs": (1, 120)})
    counts = np.asarray(draw_masks(jax.random.key(6), graph, 4000)["obs"]).sum(-1)
    assert counts.min() >= 1 and counts.max() <= 120
    skewed = (np.median(counts, axis=1) <= 10) & (counts.max(axis=1) >= 50)
    assert 0.12 < skewed.mean() < 0.25


def test_stratified_sizes_keep_every_data_sets_distribution_and_steady_the_batch_total():
    """Training batches that are packed draw their sizes stratified: each data set's sizes keep their
    distribution (so the expected loss is unchanged), while the batch's total varies less."""
    from scipy import stats

    graph = build_graph(two_level, ["y"], {"group": (2, 9), "obs": (1, 30)})

    def counts(stratified):
        draw = jax.jit(jax.vmap(lambda k: {n: m.sum(axis=-1) for n, m in draw_masks(k, graph, 16, stratified).items()}))
        out = draw(jax.random.split(jax.random.key(7), 2000))
        return np.asarray(out["group"]), np.asarray(out["obs"]).sum(-1)   # (batches, 16), (batches, 16)

    groups, totals = counts(stratified=True)
    for position in (0, 15):  # each data set's number of groups: uniform on 2..9 (chi-square, 7 df, p = 0.001)
        observed = np.bincount(groups[:, position] - 2, minlength=8)
        assert stats.chisquare(observed).statistic < 24.3
    plain_groups, plain_totals = counts(stratified=False)
    # A data set's number of observations (designs and group sizes together) has the same distribution.
    assert stats.ks_2samp(totals[:, 3], plain_totals[:, 3]).pvalue > 0.001
    assert stats.ks_2samp(totals.ravel(), plain_totals.ravel()).pvalue > 0.001
    assert totals.sum(1).std() < 0.75 * plain_totals.sum(1).std()
