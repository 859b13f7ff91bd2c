"""A NumPyro ``scan`` whose length is ``n_<level>`` forms an ordered (time) level."""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan

import amortize as am
from amortize.graph import build_graph
from amortize.models import air_traffic


def test_scan_becomes_an_ordered_level_nested_in_its_plate():
    graph = build_graph(air_traffic.model, ["u", "w", "y"], {"country": (2, 6), "time": (3, 5)})
    time = graph.plates["time"]
    assert time.ordered and time.parent == "country" and time.path == ("country", "time")
    assert not graph.plates["country"].ordered
    for name in ("u", "w", "y"):
        site = graph.sites[name]
        # Program layout (time, country): the scan's steps lead, the plate follows.
        assert site.path == ("country", "time") and site.plate_axes == (1, 0)
    assert graph.sites["alpha"].path == ("country",)
    assert {f.name: f.targets for f in am.compile(
        air_traffic.model, data=["u", "w", "y"], sizes={"country": (2, 6), "time": (3, 5)}).factorization}[
        "country"] == air_traffic.LOCAL


def _ar(n_group, n_time, y=None, length_offset=0):
    rho = numpyro.sample("rho", dist.Uniform(-1, 1))
    with numpyro.plate("group", n_group):
        level = numpyro.sample("level", dist.Normal(0, 1))

    def step(previous, y_t):
        with numpyro.plate("group", n_group):
            y_t = numpyro.sample("y", dist.Normal(level + rho * previous, 1.0), obs=y_t)
        return y_t, None

    scan(step, jnp.zeros(n_group), y, length=n_time + length_offset)


def test_scan_length_must_follow_a_size_argument():
    def shorter(n_group, n_time, y=None):
        _ar(n_group, n_time, y, length_offset=-1)

    with pytest.raises(am.ModelError, match=r"inside a `numpyro.contrib.control_flow.scan` of length 4.*"
                                            r"length=n_time.*does not follow `n_time`"):
        build_graph(shorter, ["y"], {"group": (2, 4), "time": (2, 5)})
    with pytest.raises(am.ModelError, match=r"ordered \(time\) level.*sizes=\{'time': \(min, max\)\}"):
        build_graph(lambda n_group, y=None: _ar(n_group, 5, y), ["y"], {"group": (2, 4)})


def test_latent_states_inside_a_scan_are_rejected():
    def state_space(n_time, y=None):
        def step(previous, y_t):
            x = numpyro.sample("x", dist.Normal(previous, 1.0))
            numpyro.sample("y", dist.Normal(x, 1.0), obs=y_t)
            return x, None

        scan(step, 0.0, y, length=n_time)

    with pytest.raises(am.ModelError, match=r"Latent site `x` is inside the scan that forms the ordered level `time`"):
        build_graph(state_space, ["y"], {"time": (2, 5)})


def test_covariates_inside_a_scan_are_told_from_responses():
    # NumPyro's provenance sees the scan's carry as one value and reports every
    # scanned site as depending on every latent; amortize asks the gradients.
    from amortize.padded_program import covariate_names, response_names

    graph = build_graph(air_traffic.model, ["u", "w", "y"], {"country": (2, 6), "time": (3, 5)})
    assert covariate_names(graph) == ("u", "w") and response_names(graph) == ("y",)
    assert set(graph.sites["y"].parents) >= set(air_traffic.LOCAL)
    assert not set(graph.sites["u"].parents) & set(graph.latent_names)


def test_a_dependence_through_a_relu_at_zero_gradient_is_kept():
    """The prior puts `shift` near -5, where max(shift, 0) has zero gradient: a gradient test at a prior
    draw (the analysis before issue 20, item 5) dropped `shift` from y's parents, so y looked like a
    covariate (no latent parent) and was conditioned on, not inferred. The jaxpr's data flow keeps it."""
    from numpyro.contrib.control_flow import scan as numpyro_scan
    from amortize.padded_program import covariate_names

    def relu_series(n_time, y=None, x=None):
        shift = numpyro.sample("shift", dist.Normal(-5.0, 0.1))

        def step(previous, observed):
            x_t, y_t = observed if observed is not None else (None, None)
            x_t = numpyro.sample("x", dist.Normal(0.5 * previous[0], 1.0), obs=x_t)
            y_t = numpyro.sample("y", dist.Normal(x_t + jnp.maximum(shift, 0.0), 1.0), obs=y_t)
            return (x_t, y_t), None

        numpyro_scan(step, (0.0, 0.0), (x, y) if y is not None else None, length=n_time)

    graph = build_graph(relu_series, ["x", "y"], {"time": (3, 6)})
    assert "shift" in graph.sites["y"].parents
    assert "shift" not in graph.sites["x"].parents       # the covariate's own chain stays free of it
    assert covariate_names(graph) == ("x",)
