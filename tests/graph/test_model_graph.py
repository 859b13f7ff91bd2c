"""Programs amortize cannot factorize get errors that name the site and the fix."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import amortize as am
from amortize.graph import build_graph, factorize
from amortize.simulate import from_canonical, instance_log_prob, to_canonical
from tests.conftest import two_level

SIZES = {"group": (2, 10), "obs": (1, 5)}


def test_size_argument_without_training_range_is_rejected():
    with pytest.raises(am.ModelError, match=r"Model argument `n_obs` is the size of plate `obs`.*sizes=\{'obs'"):
        build_graph(two_level, ["y"], {"group": (2, 5)})


def test_plate_with_a_literal_size_is_rejected():
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", 8):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Plate `group` has size 8 fixed.*`n_group`"):
        build_graph(model, ["y"], {})


def test_sizes_for_a_plate_without_size_argument_is_rejected():
    def model(size=3, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", size):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"no argument `n_group`"):
        build_graph(model, ["y"], {"group": (1, 5)})


def test_plate_that_ignores_its_size_argument_is_rejected():
    def model(n_group, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", 7):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Plate `group` does not take its size from the argument `n_group`"):
        build_graph(model, ["y"], {"group": (1, 5)})


def test_plate_without_training_range_is_rejected():
    def model(n_group, n_obs=3, y=None):
        with numpyro.plate("group", n_group):
            mu = numpyro.sample("mu", dist.Normal(0, 1))
            with numpyro.plate("obs", n_obs):
                numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Plate `obs` has no training range.*sizes=\{'obs'"):
        build_graph(model, ["y"], {"group": (2, 5)})


@pytest.mark.parametrize("bad", [(0, 5), (5, 2), "many"])
def test_invalid_size_range_is_rejected(bad):
    with pytest.raises(am.ModelError, match=r"sizes\['group'\]"):
        build_graph(two_level, ["y"], {"group": bad, "obs": (1, 5)})


def test_unknown_data_site_is_rejected():
    with pytest.raises(am.ModelError, match=r"Unknown data site `z`.*mu, tau, sigma, theta, y"):
        build_graph(two_level, ["y", "z"], SIZES)


def test_a_finite_discrete_latent_becomes_a_classifier_factor():
    def model(n_obs, y=None):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(z, 1), obs=y)

    graph = build_graph(model, ["y"], {"obs": (1, 5)})
    assert graph.sites["z"].num_classes == 2 and graph.sites["z"].unconstrained_shape == ()
    factorization = factorize(graph)
    assert str(factorization) == "p(z | y)" and factorization["z"].is_classifier


def test_discrete_latent_with_infinite_support_is_rejected():
    def model(n_obs, y=None):
        k = numpyro.sample("k", dist.Poisson(3.0))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(k, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Latent site `k` \(Poisson.*infinite support"):
        build_graph(model, ["y"], {"obs": (1, 5)})


def test_site_coupling_the_groups_is_rejected():
    def model(n_group, y=None, total=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", n_group):
            theta = numpyro.sample("theta", dist.Normal(mu, 1))
            numpyro.sample("y", dist.Normal(theta, 1), obs=y)
        numpyro.sample("total", dist.Normal(theta.sum(), 1), obs=total)

    with pytest.raises(am.ModelError, match=r"Site `total` \(the global level\) depends on `theta`.*couples the instances of plate `group`"):
        build_graph(model, ["y", "total"], {"group": (2, 5)})


def test_crossed_plates_are_rejected():
    def crossed(n_row, n_col, y=None, x=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        row = numpyro.plate("row", n_row, dim=-2)
        col = numpyro.plate("col", n_col, dim=-1)
        with row:
            numpyro.sample("x", dist.Normal(mu, 1), obs=x)
        with col, row:
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Site `y` is inside plates col > row.*crossed plates"):
        build_graph(crossed, ["y", "x"], {"row": (1, 3), "col": (1, 3)})


def test_fixed_batch_axes_and_fixed_plates_over_parameters_join_the_event():
    """Batch axes outside every plate, and plates of fixed size over parameters only, are event
    axes, as NUTS treats them (issue 18, item 4); their log densities are summed per instance."""
    def model(n_obs, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1).expand([3]))
        with numpyro.plate("components", 2):
            loc = numpyro.sample("loc", dist.Normal(0, 1))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(mu.sum() + loc.sum(), 1), obs=y)

    graph = build_graph(model, ["y"], {"obs": (1, 5)})
    assert set(graph.plates) == {"obs"}
    assert (graph.sites["mu"].event_shape, graph.sites["mu"].unconstrained_shape) == ((3,), (3,))
    assert (graph.sites["loc"].path, graph.sites["loc"].event_shape) == ((), (2,))
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(n_obs=4)
    for name in ("mu", "loc"):
        site, value = graph.sites[name], trace[name]["value"]
        assert np.array_equal(from_canonical(to_canonical(value, site), site), value)
        draws = jnp.stack([value, value + 1.0])           # leading draw axis, as the density sees it
        log_prob = trace[name]["fn"].log_prob(draws)
        np.testing.assert_allclose(instance_log_prob(log_prob, draws, site), log_prob.sum(-1), rtol=1e-6)


def test_batch_axis_that_grows_with_a_plate_outside_it_is_rejected():
    def model(n_obs, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1).expand([n_obs]))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Site `mu` has batch shape \(5,\).*changes with the plate sizes"):
        build_graph(model, ["y"], {"obs": (1, 5)})


def test_site_named_like_a_plate_is_rejected_with_numpyros_message():
    def model(n_group, group=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", n_group):
            numpyro.sample("group", dist.Normal(mu, 1), obs=group)

    with pytest.raises(am.ModelError, match=r"`group` duplicated"):
        build_graph(model, ["group"], {"group": (1, 5)})


def test_argument_without_default_is_rejected():
    def model(n_obs, covariate, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Model argument `covariate` has no default"):
        build_graph(model, ["y"], {"obs": (1, 5)})


def test_support_that_depends_on_another_site_is_rejected():
    def model(n_obs, y=None):
        high = numpyro.sample("high", dist.HalfNormal(1))
        level = numpyro.sample("level", dist.Uniform(0, high))
        with numpyro.plate("obs", n_obs):
            numpyro.sample("y", dist.Normal(level, 1), obs=y)

    with pytest.raises(am.ModelError, match=r"Latent site `level` \(Uniform.*support that depends on other sites"):
        build_graph(model, ["y"], {"obs": (1, 5)})


def test_program_that_fails_reports_its_own_error():
    def model(n_obs, y=None):
        raise RuntimeError("boom")

    with pytest.raises(am.ModelError, match=r"failed when traced.*RuntimeError: boom"):
        build_graph(model, ["y"], {"obs": (1, 5)})


def _one_level(extra):
    """A one-level program with one extra statement ``extra(mu, n_obs, y)``."""
    def model(n_obs, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        extra(mu, n_obs, y)

    return model


def _observe(mu, n_obs, y, **kwargs):
    with numpyro.plate("obs", n_obs, **kwargs.pop("plate", {})):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y, **kwargs)


@pytest.mark.parametrize("extra, match", [
    # numpyro.factor: a density term no simulation can produce (the semi-supervised HMM's whole likelihood)
    (lambda mu, n, y: (_observe(mu, n, y), numpyro.factor("penalty", -mu**2)),
     r"numpyro.factor site\(s\) `penalty`.*cannot be simulated.*amortize.reference.nuts"),
    # an observation fixed inside the program: every simulation holds the same value
    (lambda mu, n, y: (_observe(mu, n, y), numpyro.sample("anchor", dist.Normal(mu, 1.0), obs=0.5)),
     r"Site `anchor` is observed inside the program.*data=\[..., 'anchor'\]"),
    # obs_mask: NumPyro's imputation idiom, which would silently do nothing
    (lambda mu, n, y: _observe(mu, n, y, obs_mask=jnp.arange(n) % 2 == 0),
     r"Site `y` is written with obs_mask="),
    # subsampling: each simulation would train on, and infer from, part of a data set
    (lambda mu, n, y: _observe(mu, n, y, plate={"subsample_size": 3}),
     r"Plate `obs` subsamples \(subsample_size=3 of 5\).*Remove subsample_size"),
])
def test_what_cannot_be_amortized_is_refused_loudly(extra, match):
    with pytest.raises(am.ModelError, match=match):
        am.compile(_one_level(extra), data=["y"], sizes={"obs": (2, 5)})
    # The same program is fine for NUTS, which evaluates its density as written.
    if "factor" in match:
        build_graph(_one_level(extra), ["y"], {"obs": (2, 5)}, amortized=False)


def test_an_argument_amortize_never_passes_is_named():
    # NumPyro's divorce regression: covariates as arguments, traced as None, compile a different model.
    def divorce(n_state, marriage=None, divorce=None):
        a = numpyro.sample("a", dist.Normal(0.0, 0.2))
        mu = a if marriage is None else a + 0.5 * marriage
        with numpyro.plate("state", n_state):
            numpyro.sample("divorce", dist.Normal(mu, 1.0), obs=divorce)

    with pytest.warns(am.ModelWarning, match=r"`marriage` \(default None\).*numpyro.sample\('marriage'"):
        build_graph(divorce, ["divorce"], {"state": (10, 50)})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", am.ModelWarning)
        build_graph(two_level, ["y"], SIZES)  # every argument is a size or a data site
