"""Ragged packing: the observation level's summary on real instances only gives the padded loss and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import amortize as am
from amortize.build import log_prob, packable_levels
from amortize.networks.packing import pack, packing_total
from amortize.simulate import draw_masks, simulate
from amortize.train import packing_totals
from tests.conftest import two_level

SIZES = {"group": (2, 30), "obs": (1, 20)}


@pytest.fixture(scope="module")
def fresh():
    """Untrained networks of the two-level model (standardized by a pilot) and one simulated batch."""
    amortizer = am.compile(two_level, data=["y"], sizes=SIZES,
                           network=am.NetworkConfig(summary_width=32, flow_hidden=32, flow_layers=2))
    amortizer.init(seed=0, pilot_size=256)
    sim = simulate(jax.random.key(3), amortizer.graph, amortizer.factorization, 32)
    return amortizer, sim


def _loss_and_grads(amortizer, sim, packing, valid):
    graphdef, params, rest = nnx.split(amortizer.network, nnx.Param, ...)

    def loss(params):
        net = nnx.merge(graphdef, params, rest)
        per_factor = log_prob(net, amortizer.spec, sim.latents, sim.data, sim.masks, packing=packing)
        return -jnp.sum(jnp.where(valid, sum(per_factor.values()), 0.0))

    return jax.value_and_grad(loss)(params)


def _assert_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(np.abs(y).max(), 1e-6))


def test_pack_lists_the_real_instances_data_set_after_data_set():
    mask = np.array([[[1, 1, 0], [1, 0, 0]],          # data set 0: groups of 2 and 1
                     [[1, 1, 1], [0, 0, 0]]], bool)   # data set 1: one group of 3, an empty one
    packing, fits = pack(jnp.asarray(mask), total=8)
    np.testing.assert_array_equal(packing.rows[:6], [0, 1, 3, 6, 7, 8])
    np.testing.assert_array_equal(packing.sets.segment[:6], [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(packing.sets.weight, [1, 1, 1, 1, 1, 1, 0, 0])
    assert packing.sets.num_sets == 4 and fits.tolist() == [True, True]
    _, fits = pack(jnp.asarray(mask), total=4)          # only the first data set's 3 instances fit
    assert fits.tolist() == [True, False]


def test_packed_and_padded_layouts_give_the_same_loss_and_gradients(fresh):
    amortizer, sim = fresh
    assert packable_levels(amortizer.spec) == ("obs",)  # the groups hold latents: their embeddings condition them
    real = int(np.sum(sim.masks["obs"]))
    assert real < 0.6 * sim.masks["obs"].size           # the padding this saves
    packing, fits = pack(sim.masks["obs"], total=real + 100)
    assert bool(np.all(fits))
    padded = _loss_and_grads(amortizer, sim, None, sim.valid)
    packed = _loss_and_grads(amortizer, sim, {"obs": packing}, sim.valid)
    _assert_close(packed[0], padded[0], rtol=1e-5)
    _assert_close(packed[1], padded[1], rtol=1e-3)


def test_data_sets_that_overflow_the_packed_length_are_left_out_exactly(fresh):
    amortizer, sim = fresh
    real = int(np.sum(sim.masks["obs"]))
    packing, fits = pack(sim.masks["obs"], total=real // 2)
    assert 0 < int(np.sum(fits)) < 32 and np.all(np.diff(np.asarray(fits).astype(int)) <= 0)  # a prefix fits
    padded = _loss_and_grads(amortizer, sim, None, sim.valid & fits)
    packed = _loss_and_grads(amortizer, sim, {"obs": packing}, sim.valid & fits)
    _assert_close(packed[0], padded[0], rtol=1e-5)
    _assert_close(packed[1], padded[1], rtol=1e-3)


def test_packed_lengths_follow_the_size_distribution(fresh):
    amortizer, _ = fresh
    graph = amortizer.graph
    totals = packing_totals(amortizer.spec, lambda k: draw_masks(k, graph, 64), jax.random.key(0))
    assert set(totals) == {"obs"}
    counts = [int(np.sum(draw_masks(jax.random.key(i), graph, 64)["obs"])) for i in range(100, 300)]
    # Above every batch of 200 fresh ones (it sits ~4.5 sds above the mean), far below the padded 64 × 30 × 20.
    assert max(counts) <= totals["obs"] <= 0.5 * 64 * 30 * 20
    assert packing_total(np.array([10.0, 10.0]), padded=100, quantum=8) == 16
    assert packing_total(np.array([90.0, 95.0]), padded=100, quantum=64) == 100  # never above the padding
