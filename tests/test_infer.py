"""The sampling pass on its own: log q of the draws, constrained values, real instances (untrained networks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import amortize as am
from amortize.build import log_prob
from amortize.prepare import prepare_data
from amortize.infer import constrained, gather_instances, make_latent_sampler, make_sampler
from amortize.models import eight_schools as es

GROUPS = [np.array([0.4, 1.1]), np.array([-0.5, 0.1, 0.3, -0.2]), np.array([1.8])]


@pytest.fixture(scope="module")
def schools():
    """Eight schools with fresh (untrained) networks: tau has a constrained support, theta a plate."""
    amortizer = am.compile(es.model, data=["y", "sigma"], sizes=es.SIZES).init(seed=0, pilot_size=256)
    return amortizer, prepare_data(amortizer.graph, es.data(), pad_to={"school": es.SIZES["school"][1]})


def test_the_draws_log_q_is_the_networks_density_at_them(schools):
    amortizer, prepared = schools
    draw = make_latent_sampler(amortizer.network, amortizer.spec)
    draws = draw(jax.random.key(0), prepared.data, prepared.masks, 64)
    # The forward pass's Jacobians give the same density as scoring the draws by the inverse pass
    # (log_prob leaves out the standardization's constant Jacobian; add it back).
    latents = {f: v[0] for f, v in draws.values.items()}
    data = {n: jnp.repeat(v, 64, axis=0) for n, v in prepared.data.items()}
    masks = {p: jnp.repeat(m, 64, axis=0) for p, m in prepared.masks.items()}
    scored = log_prob(amortizer.network, amortizer.spec, latents, data, masks, per_instance=True)
    for factor in amortizer.spec.factors:
        jacobian = jnp.sum(jnp.log(amortizer.network.latent_scale[factor.name][...]))
        mask = np.asarray(masks[factor.level]) if factor.level else np.ones(64, bool)
        np.testing.assert_allclose(np.where(mask, np.asarray(draws.log_q[factor.name][0]), 0.0),
                                   np.asarray(scored[factor.name] - np.where(mask, jacobian, 0.0)),
                                   rtol=1e-4, atol=1e-3)
    # A pure function of its key: same key, same draws; another key, other draws.
    again = draw(jax.random.key(0), prepared.data, prepared.masks, 64)
    other = draw(jax.random.key(1), prepared.data, prepared.masks, 64)
    for f in draws.values:
        np.testing.assert_array_equal(np.asarray(draws.values[f]), np.asarray(again.values[f]))
        assert not np.allclose(np.asarray(draws.values[f]), np.asarray(other.values[f]))


def test_constrained_values_lie_in_each_sites_support_and_padding_is_dropped(schools):
    amortizer, prepared = schools
    graph, factorization = amortizer.graph, amortizer.factorization
    values = make_latent_sampler(amortizer.network, amortizer.spec)(
        jax.random.key(2), prepared.data, prepared.masks, 500).values
    sites = constrained(values, graph, factorization)
    assert np.all(np.asarray(sites["tau"]) > 0)  # HalfCauchy: biject_to(positive)
    padded_schools = es.SIZES["school"][1]
    assert np.shape(sites["theta"]) == (1, 500, padded_schools)
    real = gather_instances(sites, prepared, graph)
    assert real["theta"].shape == (500, 8) and real["mu"].shape == (500,)
    np.testing.assert_array_equal(real["theta"], np.asarray(sites["theta"])[0, :, :8])
    # make_sampler is the same pass, constrained inside the compiled function.
    direct = make_sampler(amortizer.network, amortizer.spec, graph, factorization)(
        jax.random.key(2), prepared.data, prepared.masks, 500)
    np.testing.assert_allclose(np.asarray(direct["tau"]), np.asarray(sites["tau"]), rtol=1e-5)


def test_drawing_only_the_global_factors_gives_the_same_globals(schools):
    # Leave-one-group-out CV draws the globals of many data sets and no group's locals.
    amortizer, prepared = schools
    draw = make_latent_sampler(amortizer.network, amortizer.spec)
    outer = tuple(f.name for f in amortizer.spec.factors if not f.level)
    full = draw(jax.random.key(3), prepared.data, prepared.masks, 100)
    globals_only = draw(jax.random.key(3), prepared.data, prepared.masks, 100, only=outer)
    assert set(globals_only.values) == set(outer) and len(outer) < len(full.values)
    for f in outer:
        np.testing.assert_array_equal(np.asarray(globals_only.values[f]), np.asarray(full.values[f]))
        np.testing.assert_array_equal(np.asarray(globals_only.log_q[f]), np.asarray(full.log_q[f]))
