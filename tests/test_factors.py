"""Factor kinds (``amortize.factors``): packing per kind, and the pipeline asking the kinds, never switching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import amortize as am
from amortize import factors
from amortize.build import draw_latents, log_prob
from amortize.prepare import prepare_data
from amortize.infer import constrained
from amortize.models import eight_schools as es
from amortize.models import gaussian_hmm, gaussian_mixture
from amortize.simulate import factor_dim, pack_factor, unpack_factor


def test_each_kind_packs_its_sites_into_the_vector_its_network_models():
    graph_schools = am.compile(es.model, data=["y", "sigma"], sizes=es.SIZES)
    top = graph_schools.factorization["global"]
    assert top.kind == "flow" and factor_dim(top, graph_schools.graph) == 2
    packed = pack_factor({"mu": jnp.array([1.5]), "tau": jnp.array([2.0])}, top, graph_schools.graph)
    np.testing.assert_allclose(packed, [[1.5, np.log(2.0)]], rtol=1e-6)  # tau > 0 unconstrained by log
    back = unpack_factor(packed, top, graph_schools.graph)
    np.testing.assert_allclose(back["tau"], [2.0], rtol=1e-6)

    mixture = am.compile(gaussian_mixture.model, data=["y"], sizes=gaussian_mixture.SIZES)
    indicator = mixture.factorization["z"]
    assert indicator.kind == "classifier" and factor_dim(indicator, mixture.graph) == 1
    packed = pack_factor({"z": jnp.array([0, 1, 1])}, indicator, mixture.graph)
    assert packed.shape == (3, 1) and packed.dtype == jnp.float32
    np.testing.assert_array_equal(unpack_factor(packed, indicator, mixture.graph)["z"], [0, 1, 1])


class _Recording:
    """A registered kind that records which of its methods the pipeline calls, then does the same."""

    def __init__(self, kind, calls: set):
        self._kind, self._calls = kind, calls

    def __getattr__(self, attr):
        value = getattr(self._kind, attr)
        if not callable(value):
            return value

        def recorded(*args, **kwargs):
            self._calls.add((self._kind.name, attr))
            return value(*args, **kwargs)
        return recorded


@pytest.mark.parametrize("program, data, sizes, kinds", [
    (gaussian_mixture.model, ["y"], {"obs": (10, 20)}, {"flow", "classifier"}),
    (gaussian_hmm.model, ["y", "count"], {"unit": (5, 10)}, {"flow", "chain"}),
])
def test_networks_simulation_densities_and_draws_come_from_the_registered_kinds(program, data, sizes, kinds,
                                                                                monkeypatch):
    calls = set()
    for name, kind in list(factors.KINDS.items()):
        monkeypatch.setitem(factors.KINDS, name, _Recording(kind, calls))
    amortizer = am.compile(program, data=data, sizes=sizes, network=am.NetworkConfig.fast()).init(
        seed=0, pilot_size=64)
    assert {f.kind for f in amortizer.factorization} == kinds
    truth, observed = amortizer.simulate({p: hi for p, (_, hi) in sizes.items()}, seed=1)
    prepared = prepare_data(amortizer.graph, observed)
    draws = draw_latents(amortizer.network, amortizer.spec, jax.random.key(0), prepared.data, prepared.masks,
                         8, log_q=True)
    latents = {f: v[0] for f, v in draws.values.items()}  # 8 draws of the one data set, as a batch of 8
    batch = {n: jnp.repeat(v, 8, axis=0) for n, v in prepared.data.items()}
    masks = {p: jnp.repeat(m, 8, axis=0) for p, m in prepared.masks.items()}
    scored = log_prob(amortizer.network, amortizer.spec, latents, batch, masks)
    sites = constrained(draws.values, amortizer.graph, amortizer.factorization)
    for kind in kinds:
        assert {(kind, m) for m in ("network", "pack", "dim", "draw", "log_prob", "unpack")} <= calls, kind
    # What the kinds returned is what the pipeline reports: finite densities, values in each site's support.
    for factor in amortizer.factorization:
        assert np.all(np.isfinite(np.asarray(draws.log_q[factor.name])))
        assert np.all(np.isfinite(np.asarray(scored[factor.name])))
    indicator = next(f for f in amortizer.factorization if f.kind != "flow").targets[0]
    assert set(np.unique(np.asarray(sites[indicator]))) <= {0, 1}
    assert "indicator_probabilities" in draws.probabilities
