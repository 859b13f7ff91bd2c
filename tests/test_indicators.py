"""Discrete latents (mixture indicators): classifier factors, exact responsibilities, output, errors."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.models import gaussian_mixture

NETWORK = am.NetworkConfig(summary_width=64, embed_dim=32, pooled_dim=32, flow_hidden=64)


@pytest.fixture(scope="module")
def mixture():
    amortizer = am.compile(gaussian_mixture.model, data=["y"], sizes={"obs": (10, 60)}, network=NETWORK)
    amortizer.fit(steps=4000, batch_size=64, seed=0, progress=False)
    return amortizer


def test_indicators_come_after_the_continuous_factors():
    amortizer = am.compile(gaussian_mixture.model, data=["y"], sizes={"obs": (10, 60)})
    assert str(amortizer.factorization) == "p(w, mu, sigma | y) · Π_obs p(z | w, mu, sigma, y[obs])"
    assert [f.classes for f in amortizer.factorization] == [None, 2]


def test_learned_indicator_probabilities_match_the_exact_responsibilities(mixture):
    # Given each draw's parameters, p(z_i | y, w, mu, sigma) is the component
    # responsibility in closed form: the classifier must reproduce it, for
    # whatever parameters the flow hands it.
    rng = np.random.default_rng(3)
    errors = []
    for replicate in range(4):
        z = rng.uniform(size=40) < 0.4
        y = np.where(z, rng.normal(1.2, 0.7, size=40), rng.normal(-1.0, 0.7, size=40))
        tree = mixture.sample({"y": y}, num_samples=400, seed=replicate)
        post = tree.posterior
        learned = tree.indicator_probabilities["z"].values[..., 1].reshape(400, 40)
        exact = gaussian_mixture.responsibilities(
            y, post["w"].values.reshape(400), post["mu"].values.reshape(400, 2), post["sigma"].values.reshape(400))
        errors.append(np.mean(np.abs(learned - exact)))
    assert np.mean(errors) < 0.03


def test_indicator_draws_are_integers_with_the_plate_dimension(mixture):
    rng = np.random.default_rng(5)
    y = np.concatenate([rng.normal(-2.0, 0.4, size=10), rng.normal(2.0, 0.4, size=10)])
    tree = mixture.sample({"y": y}, num_samples=1000, seed=1)
    z = tree.posterior["z"]
    assert z.dims == ("chain", "draw", "obs") and np.issubdtype(z.dtype, np.integer)
    assert set(np.unique(z.values)) <= {0, 1}
    probabilities = tree.indicator_probabilities["z"]
    assert probabilities.dims == ("chain", "draw", "obs", "z_class")
    np.testing.assert_allclose(probabilities.sum("z_class"), 1.0, atol=1e-5)
    # The draws follow their probabilities: the share of z = 1 over 1000 draws is
    # within 4 binomial sds (at most 4 * 0.016) of the mean probability.
    share = z.mean(("chain", "draw")).values
    mean_probability = probabilities.sel(z_class=1).mean(("chain", "draw")).values
    np.testing.assert_allclose(share, mean_probability, atol=0.065)
    # With ordered means and a shared sd, p(z = 1 | y, draw) increases with y in every draw.
    order = np.argsort(y)
    assert np.all(np.diff(mean_probability[order]) > -0.01)
    assert mean_probability[order][-1] - mean_probability[order][0] > 0.5
    mu = tree.posterior["mu"].values
    assert np.all(mu[..., 0] < mu[..., 1])  # the ordered support holds in every draw: no label switching


def test_saved_mixture_amortizer_round_trips(mixture, tmp_path):
    mixture.save(tmp_path / "mixture.amortizer")
    loaded = am.load(tmp_path / "mixture.amortizer")
    y = np.linspace(-2, 2, 15)
    a, b = mixture.draws({"y": y}, 50, seed=4)[0], loaded.draws({"y": y}, 50, seed=4)[0]
    np.testing.assert_array_equal(a["z"], b["z"])


def _poisson_latent(n_obs, y=None):
    rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
    with numpyro.plate("obs", n_obs):
        k = numpyro.sample("k", dist.Poisson(rate))
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y)


def _two_indicators(n_obs, y=None):
    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    with numpyro.plate("obs", n_obs):
        a = numpyro.sample("a", dist.Bernoulli(w))
        b = numpyro.sample("b", dist.Bernoulli(w))
        numpyro.sample("y", dist.Normal(a + b, 1.0), obs=y)


def _shifted_values(n_obs, y=None):
    with numpyro.plate("obs", n_obs):
        k = numpyro.sample("k", dist.DiscreteUniform(1, 3))
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y)


def _continuous_below(n_group, n_obs, y=None):
    with numpyro.plate("group", n_group, dim=-2):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        with numpyro.plate("obs", n_obs, dim=-1):
            x = numpyro.sample("x", dist.Normal(z, 1.0))
            numpyro.sample("y", dist.Normal(x, 1.0), obs=y)


@pytest.mark.parametrize("model, sizes, message", [
    (_poisson_latent, {"obs": (2, 5)}, r"`k` \(Poisson, at plate `obs`\) is discrete with infinite support"),
    (_two_indicators, {"obs": (2, 5)}, r"`a`, `b` are discrete indicators at the same level \(plate `obs`\)"),
    (_shifted_values, {"obs": (2, 5)}, r"`k` \(DiscreteUniform.*not the class indices 0..K-1.*Categorical"),
    (_continuous_below, {"group": (2, 4), "obs": (1, 3)}, r"`x` lives in a plate inside the level of the discrete indicator `z`"),
])
def test_unsupported_discrete_latents_are_named(model, sizes, message):
    with pytest.raises(am.ModelError, match=message):
        am.compile(model, data=["y"], sizes=sizes)


def test_a_categorical_indicator_compiles_with_its_class_count():
    def three(n_obs, y=None):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
        with numpyro.plate("obs", n_obs):
            z = numpyro.sample("z", dist.Categorical(weights))
            numpyro.sample("y", dist.Normal(jnp.array([-2.0, 0.0, 2.0])[z], 1.0), obs=y)

    amortizer = am.compile(three, data=["y"], sizes={"obs": (5, 20)},
                           network=am.NetworkConfig(summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16))
    assert amortizer.factorization["z"].classes == 3
    amortizer.fit(steps=30, batch_size=16, progress=False)
    draws, _ = amortizer.draws({"y": np.array([-2.1, 0.1, 2.2, -1.9, 1.8])}, 100)
    assert draws["z"].shape == (100, 5) and set(np.unique(draws["z"])) <= {0, 1, 2}


def test_indicator_check_counts_every_real_unit_and_beats_chance(mixture):
    checks = am.diagnostics.check_indicators(mixture, num_datasets=60, num_samples=100, seed=2, chunk=20)
    check = checks["z"]
    assert check.names == ["0", "1"]
    # 60 data sets of 10–60 observations each.
    assert 600 <= check.n <= 3600 and check.confusion.sum() == check.n
    # Components drawn 3 prior sds apart on average: far better than the majority class (at most ~0.6 here).
    assert check.accuracy > 0.8
    assert np.all((check.ece >= 0) & (check.ece < 0.1))


def test_validation_report_runs_on_a_mixture(mixture, tmp_path):
    y = np.random.default_rng(8).normal(np.where(np.arange(30) < 12, -1.5, 1.5), 0.6)
    report = mixture.validate(tmp_path, data={"y": y}, num_datasets=20, sbc_draws=50, num_samples=400)
    names = set(report.calibration.parameters)
    assert {"w", "mu[0]", "mu[1]", "sigma"} <= names and not any(n.startswith("z") for n in names)
    assert (tmp_path / "report.md").exists() and (tmp_path / "ppc.png").exists()


def _grouped_mixture(n_group, n_obs, y=None):
    from amortize.models._ordered import OrderedNormal

    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    mu = numpyro.sample("mu", OrderedNormal(jnp.array([-1.5, 1.5]), 1.0))
    with numpyro.plate("group", n_group, dim=-2):
        shift = numpyro.sample("shift", dist.Normal(0.0, 0.5))
        with numpyro.plate("obs", n_obs, dim=-1):
            z = numpyro.sample("z", dist.Bernoulli(w))
            numpyro.sample("y", dist.Normal(mu[z] + shift, 0.5), obs=y)


def test_indicators_within_groups_compose_with_the_multilevel_factorization():
    amortizer = am.compile(_grouped_mixture, data=["y"], sizes={"group": (2, 6), "obs": (3, 8)},
                           network=am.NetworkConfig(summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16))
    assert str(amortizer.factorization) == (
        "p(w, mu | y) · Π_group p(shift | w, mu, y[group]) · Π_group Π_obs p(z | w, mu, shift, y[group, obs])")
    amortizer.fit(steps=30, batch_size=16, seed=0, progress=False)
    ragged = [np.array([-1.2, 1.4, 1.1]), np.array([0.2, -1.9, 1.7, 1.5, -1.4])]
    tree = amortizer.sample({"y": ragged}, num_samples=40, seed=1)
    assert tree.posterior["z"].dims == ("chain", "draw", "obs") and tree.posterior["z"].sizes["obs"] == 8
    assert list(tree.posterior["group_of_obs"].values) == [0, 0, 0, 1, 1, 1, 1, 1]
    assert tree.indicator_probabilities["z"].dims == ("chain", "draw", "obs", "z_class")
    assert tree.posterior["shift"].dims == ("chain", "draw", "group")
