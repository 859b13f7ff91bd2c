"""Factorization of 1-, 2- and 3-level programs."""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from amortize.graph import build_graph, factorize
from tests.conftest import three_level, two_level


def one_level(n_obs, y=None):
    loc = numpyro.sample("loc", dist.Normal(0, 1))
    scale = numpyro.sample("scale", dist.LogNormal(0, 1))
    with numpyro.plate("obs", n_obs):
        numpyro.sample("y", dist.Normal(loc, scale), obs=y)


def test_one_level_program_has_one_global_factor():
    factorization = factorize(build_graph(one_level, ["y"], {"obs": (1, 20)}))
    assert str(factorization) == "p(loc, scale | y)"
    (factor,) = factorization
    assert factor.level is None and factor.targets == ("loc", "scale") and factor.conditioners == ()


def test_two_level_program_matches_the_paper():
    factorization = factorize(build_graph(two_level, ["y"], {"group": (2, 50), "obs": (1, 30)}))
    assert str(factorization) == "p(mu, tau, sigma | y) · Π_group p(theta | mu, tau, sigma, y[group])"
    local = factorization["group"]
    assert local.parent_factors == ("global",)
    assert local.data_scope == ("y",)


def test_three_level_program_conditions_on_every_enclosing_level():
    graph = build_graph(three_level, ["y"], {"region": (2, 5), "county": (1, 4), "house": (1, 6)})
    factorization = factorize(graph)
    assert [f.name for f in factorization] == ["global", "region", "county"]
    assert factorization["county"].conditioners == ("mu", "sigma", "alpha")
    assert factorization["county"].parent_factors == ("global", "region")
    assert str(factorization["county"]) == "Π_region Π_county p(beta | mu, sigma, alpha, y[region, county])"


def several_latents(n_group, n_obs, y=None, x=None):
    # shared (non-hierarchical) noise and slope, two hyper-parameters, two local latents,
    # a covariate drawn from a design distribution, and auto-allocated plate dims.
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    tau = numpyro.sample("tau", dist.HalfNormal(1))
    slope = numpyro.sample("slope", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.Gamma(2, 2))
    with numpyro.plate("group", n_group):
        a = numpyro.sample("a", dist.Normal(mu, tau))
        b = numpyro.sample("b", dist.Beta(2, 2))
        with numpyro.plate("obs", n_obs):
            x = numpyro.sample("x", dist.Normal(0, 1), obs=x)
            numpyro.sample("y", dist.Normal(a + slope * b * x, sigma), obs=y)


def test_latents_with_the_same_plates_form_one_factor():
    graph = build_graph(several_latents, ["y", "x"], {"group": (2, 10), "obs": (1, 10)})
    factorization = factorize(graph)
    assert [f.targets for f in factorization] == [("mu", "tau", "slope", "sigma"), ("a", "b")]
    assert factorization["group"].data_scope == ("y", "x")
    assert str(factorization).startswith("p(mu, tau, slope, sigma | y, x) · Π_group p(a, b |")


def test_plates_with_auto_dims_are_laid_out_outermost_first():
    graph = build_graph(several_latents, ["y", "x"], {"group": (2, 10), "obs": (1, 10)})
    y = graph.sites["y"]
    # NumPyro gives the outer plate dim -1 when dims are not given: "group" is axis 1.
    assert y.path == ("group", "obs") and y.plate_axes == (1, 0)


def vector_latents(n_group, n_obs, y=None):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    corr = numpyro.sample("corr", dist.LKJCholesky(2, 2.0))
    with numpyro.plate("group", n_group, dim=-2):
        cuts = numpyro.sample("cuts", dist.TransformedDistribution(
            dist.Normal(0, 1).expand([2]).to_event(1), dist.transforms.OrderedTransform()))
        with numpyro.plate("obs", n_obs, dim=-1):
            loc = cuts.sum(-1) + weights[0] + corr[1, 0]
            numpyro.sample("y", dist.Normal(loc, 1), obs=y)


def test_vector_latents_pack_to_their_unconstrained_sizes():
    graph = build_graph(vector_latents, ["y"], {"group": (2, 5), "obs": (1, 4)})
    assert graph.sites["weights"].unconstrained_shape == (2,)
    assert graph.sites["corr"].unconstrained_shape == (1,)
    assert graph.sites["cuts"].unconstrained_shape == (2,)
    assert graph.sites["cuts"].event_shape == (2,)
