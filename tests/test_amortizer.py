"""End to end: accuracy against a closed-form posterior, equivariance, save/load, output schema."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.build import embed, log_prob
from amortize.prepare import prepare_data
from amortize.models import conjugate_normal
from tests.conftest import CONJUGATE_SIZES


def conjugate_data_sets():
    """Eight data sets spanning the trained range: 2 to 6 groups, balanced and unbalanced designs."""
    rng = np.random.default_rng(2024)
    shapes = [(2, [1, 6]), (2, [3, 3]), (3, [6, 6, 6]), (4, [1, 2, 3, 4]), (5, [5, 1, 6, 2, 4]),
              (6, [1] * 6), (6, [6] * 6), (6, [3, 5, 1, 6, 2, 4])]
    out = []
    for n_group, n_obs in shapes:
        mu = rng.normal()
        theta = rng.normal(mu, conjugate_normal.TAU, n_group)
        out.append([rng.normal(theta[j], conjugate_normal.SIGMA, n) for j, n in enumerate(n_obs)])
    return out


@pytest.mark.parametrize("case", range(8))
def test_posterior_matches_the_closed_form(trained_conjugate, case):
    """Means within 0.15 exact posterior sd and sds within 15% of exact, for mu and every theta_j.

    With 8000 iid draws the Monte Carlo error of a mean is 0.011 sd and of an sd
    about 0.8%, so these bounds test the approximation, not the sampling noise.
    """
    groups = conjugate_data_sets()[case]
    exact = conjugate_normal.exact_posterior(groups)
    draws, _ = trained_conjugate.draws({"y": groups}, num_samples=8000, seed=case)
    mu, theta = draws["mu"], draws["theta"]
    assert abs(mu.mean() - exact["mu_mean"]) < 0.15 * exact["mu_sd"]
    assert abs(mu.std() / exact["mu_sd"] - 1) < 0.15
    assert np.all(np.abs(theta.mean(0) - exact["theta_mean"]) < 0.15 * exact["theta_sd"])
    assert np.all(np.abs(theta.std(0) / exact["theta_sd"] - 1) < 0.15)


def test_permuting_groups_permutes_locals_and_keeps_globals(trained_conjugate):
    groups = conjugate_data_sets()[7]
    perm = np.array([4, 0, 5, 2, 1, 3])
    draws, _ = trained_conjugate.draws({"y": groups}, num_samples=8000, seed=11)
    permuted, _ = trained_conjugate.draws({"y": [groups[i] for i in perm]}, num_samples=8000, seed=11)
    # Same seed: the global draws are identical up to float rounding of the pooled sums.
    np.testing.assert_allclose(permuted["mu"], draws["mu"], atol=1e-4)
    # Local draws come from the permuted groups' own posteriors: moments agree within
    # 4 Monte Carlo standard errors of a difference of two independent estimates.
    sd = draws["theta"].std(0)[perm]
    assert np.all(np.abs(permuted["theta"].mean(0) - draws["theta"].mean(0)[perm]) < 4 * sd * np.sqrt(2 / 8000))
    assert np.all(np.abs(permuted["theta"].std(0) / sd - 1) < 4 * np.sqrt(1 / 8000))


def test_local_densities_are_exactly_permutation_equivariant(trained_conjugate):
    amortizer = trained_conjugate
    groups = conjugate_data_sets()[4] + [np.array([0.5])]
    perm = np.array([3, 5, 0, 1, 2, 4])
    a = prepare_data(amortizer.graph, {"y": groups}, pad_to=amortizer.graph.max_sizes())
    b = prepare_data(amortizer.graph, {"y": [groups[i] for i in perm]}, pad_to=amortizer.graph.max_sizes())
    ea = embed(amortizer.network, amortizer.spec, a.data, a.masks)
    eb = embed(amortizer.network, amortizer.spec, b.data, b.masks)
    np.testing.assert_allclose(eb["group"][0], ea["group"][0, perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eb["global"], ea["global"], rtol=1e-4, atol=1e-5)
    theta = jnp.linspace(-1, 1, 6).reshape(1, 6, 1)
    latents_a = {"global": jnp.array([[0.3]]), "group": theta}
    latents_b = {"global": jnp.array([[0.3]]), "group": theta[:, perm]}
    lp_a = log_prob(amortizer.network, amortizer.spec, latents_a, a.data, a.masks)
    lp_b = log_prob(amortizer.network, amortizer.spec, latents_b, b.data, b.masks)
    np.testing.assert_allclose(lp_a["group"], lp_b["group"], rtol=1e-5)


def test_same_seed_same_draws_and_different_seed_different_draws(trained_conjugate):
    groups = conjugate_data_sets()[0]
    a, _ = trained_conjugate.draws({"y": groups}, 500, seed=3)
    b, _ = trained_conjugate.draws({"y": groups}, 500, seed=3)
    c, _ = trained_conjugate.draws({"y": groups}, 500, seed=4)
    np.testing.assert_array_equal(a["theta"], b["theta"])
    assert not np.allclose(a["mu"], c["mu"])


def test_ragged_lists_and_long_format_give_the_same_draws(trained_conjugate):
    groups = conjugate_data_sets()[4]
    rows = np.concatenate(groups)
    labels = np.repeat(np.array(["g1", "g2", "g3", "g4", "g5"]), [len(g) for g in groups])
    a = trained_conjugate.sample({"y": groups}, num_samples=400, seed=5)
    b = trained_conjugate.sample({"y": rows}, index={"group": labels}, num_samples=400, seed=5)
    np.testing.assert_array_equal(a["posterior"]["theta"].values, b["posterior"]["theta"].values)
    assert list(b["posterior"]["group"].values) == ["g1", "g2", "g3", "g4", "g5"]


def test_sample_returns_the_inference_data_schema(trained_conjugate):
    groups = conjugate_data_sets()[4]
    tree = trained_conjugate.sample({"y": groups}, num_samples=1000, seed=0,
                                    coords={"group": ["a", "b", "c", "d", "e"]})
    posterior = tree["posterior"]
    assert posterior["mu"].dims == ("chain", "draw")
    assert posterior["theta"].dims == ("chain", "draw", "group")
    assert posterior.sizes["chain"] == 4 and posterior.sizes["draw"] == 250
    assert list(posterior["group"].values) == ["a", "b", "c", "d", "e"]
    observed = tree["observed_data"]
    assert observed["y"].dims == ("obs",)
    assert observed["y"].size == sum(len(g) for g in groups)
    assert list(observed["group_of_obs"].values[:7]) == ["a"] * 5 + ["b", "c"]
    np.testing.assert_allclose(observed["y"].values, np.concatenate(groups))
    assert posterior.attrs["inference_library"] == "amortize"
    import arviz as az

    summary = az.summary(tree)
    assert "theta[c]" in summary.index and np.all(summary["r_hat"] < 1.01)


def test_num_samples_must_split_into_the_chains_asked_for(trained_conjugate):
    data = {"y": [np.zeros(2), np.zeros(3)]}
    with pytest.raises(am.DataError, match=r"num_samples=1001 must be a positive multiple of num_chains=4"):
        trained_conjugate.sample(data, num_samples=1001, num_chains=4)
    # Left to amortize, the draws go into as many chains (up to 4) as divide them.
    posterior = trained_conjugate.sample(data, num_samples=1001, certify=False)["posterior"]
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (1, 1001)
    posterior = trained_conjugate.sample(data, num_samples=10, certify=False)["posterior"]
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (2, 5)
    for bad in (0, -5):
        with pytest.raises(am.DataError, match="positive"):
            trained_conjugate.sample(data, num_samples=bad)


def test_save_and_load_round_trip_exactly(trained_conjugate, tmp_path):
    groups = conjugate_data_sets()[5]
    path = tmp_path / "conjugate.amortizer"
    trained_conjugate.save(path)
    loaded = am.load(path)
    a, _ = trained_conjugate.draws({"y": groups}, 300, seed=9)
    b, _ = loaded.draws({"y": groups}, 300, seed=9)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert str(loaded.factorization) == str(trained_conjugate.factorization)
    np.testing.assert_allclose(loaded.history["val_loss"], trained_conjugate.history["val_loss"])
    c, _ = am.load(path, model=conjugate_normal.model).draws({"y": groups}, 300, seed=9)
    np.testing.assert_array_equal(a["theta"], c["theta"])


def test_loading_a_missing_file(tmp_path):
    with pytest.raises(am.AmortizerFileError, match=r"No saved amortizer at .*nothing.amortizer"):
        am.load(tmp_path / "nothing.amortizer")


def test_loading_a_corrupted_file(trained_conjugate, tmp_path):
    path = tmp_path / "broken.amortizer"
    trained_conjugate.save(path)
    path.write_bytes(path.read_bytes()[: 300])
    with pytest.raises(am.AmortizerFileError, match=r"not a readable amortizer file.*truncated or corrupted"):
        am.load(path)
    (tmp_path / "text.amortizer").write_text("hello")
    with pytest.raises(am.AmortizerFileError, match=r"not a readable amortizer file"):
        am.load(tmp_path / "text.amortizer")


def other_program(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("group", n_group, dim=-2):
        theta = numpyro.sample("theta", dist.StudentT(3.0, mu, 0.5))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


def test_loading_with_an_incompatible_program(trained_conjugate, tmp_path):
    path = tmp_path / "conjugate.amortizer"
    trained_conjugate.save(path)
    with pytest.raises(am.AmortizerFileError, match=r"does not match.*site `theta` was .*Normal.* and is .*StudentT"):
        am.load(path, model=other_program)


def _edit_manifest(path, edit):
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["manifest.json"])
    edit(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


def test_loading_a_file_of_another_version(trained_conjugate, tmp_path):
    path = tmp_path / "conjugate.amortizer"
    trained_conjugate.save(path)
    _edit_manifest(path, lambda manifest: manifest.update(version=99))
    with pytest.raises(am.AmortizerFileError, match=r"file version 99.*reads version 1"):
        am.load(path)


def test_archives_from_before_scalar_local_hidden_load_with_their_widths(tmp_path):
    """Such archives have no `scalar_local_hidden` and 64-wide flows for scalar group effects (now 32)."""
    old = am.compile(conjugate_normal.model, data=["y"], sizes=CONJUGATE_SIZES,
                     network=am.NetworkConfig(scalar_local_hidden=None))
    old.fit(steps=1, batch_size=8, seed=0, progress=False)
    path = tmp_path / "old.amortizer"
    old.save(path)
    _edit_manifest(path, lambda manifest: manifest["network_config"].pop("scalar_local_hidden"))
    loaded = am.load(path)
    groups = conjugate_data_sets()[5]
    a, _ = old.draws({"y": groups}, 50, seed=1)
    b, _ = loaded.draws({"y": groups}, 50, seed=1)
    np.testing.assert_array_equal(a["theta"], b["theta"])
    assert am.NetworkConfig().flow_settings(local=True, dim=1)[1] == 32  # what new amortizers get
    assert am.NetworkConfig().flow_settings(local=True, dim=2)[1] == am.NetworkConfig().flow_hidden


def test_mixture_archives_from_before_quantiles_load_without_them(tmp_path):
    """Such archives have no `quantiles`; their mixture summaries had no quantile features (now automatic)."""
    from amortize.models import gaussian_mixture

    old = am.compile(gaussian_mixture.model, data=["y"], sizes={"obs": (5, 10)},
                     network=am.NetworkConfig(quantiles=0, summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16))
    old.fit(steps=1, batch_size=8, seed=0, progress=False)
    path = tmp_path / "old.amortizer"
    old.save(path)
    _edit_manifest(path, lambda manifest: manifest["network_config"].pop("quantiles"))
    loaded = am.load(path)
    assert loaded.network.summaries["obs"].quantiles == 0
    y = np.linspace(-2.0, 2.0, 7)
    np.testing.assert_array_equal(old.draws({"y": y}, 20, seed=1)[0]["mu"], loaded.draws({"y": y}, 20, seed=1)[0]["mu"])


def test_untrained_amortizer_refuses_to_sample():
    amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=CONJUGATE_SIZES)
    with pytest.raises(am.AmortizeError, match=r"not trained yet; call `amortizer.fit"):
        amortizer.sample({"y": [np.zeros(2)]})
    assert "untrained" in repr(amortizer)


def constrained_sites(n_group, n_obs, y=None):
    rate = numpyro.sample("rate", dist.Gamma(3.0, 2.0))
    share = numpyro.sample("share", dist.Beta(2.0, 3.0))
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    chol = numpyro.sample("chol", dist.LKJCholesky(2, 3.0))
    with numpyro.plate("group", n_group, dim=-2):
        spread = numpyro.sample("spread", dist.LogNormal(0.0, 0.5))
        cuts = numpyro.sample("cuts", dist.TransformedDistribution(
            dist.Normal(0, 1).expand([2]).to_event(1), dist.transforms.OrderedTransform()))
        with numpyro.plate("obs", n_obs, dim=-1):
            loc = share * cuts[..., 0] + weights[0] * cuts[..., 1] + chol[1, 0]
            numpyro.sample("y", dist.Normal(loc, spread / rate), obs=y)


def test_every_support_comes_back_constrained():
    amortizer = am.compile(constrained_sites, data=["y"], sizes={"group": (2, 4), "obs": (2, 5)},
                           network=am.NetworkConfig(summary_width=16, flow_hidden=16, flow_layers=2,
                                                    flow="affine"))
    amortizer.fit(steps=30, batch_size=16, seed=0, progress=False)
    tree = amortizer.sample({"y": np.zeros((3, 4))}, num_samples=400, seed=0)
    post = tree["posterior"]
    assert float(post["rate"].min()) > 0 and float(post["spread"].min()) > 0
    assert 0 < float(post["share"].min()) and float(post["share"].max()) < 1
    np.testing.assert_allclose(post["weights"].sum("weights_event_0"), 1.0, rtol=1e-5)
    assert post["weights"].dims == ("chain", "draw", "weights_event_0")
    chol = post["chol"].values
    np.testing.assert_allclose((chol @ np.swapaxes(chol, -1, -2))[..., [0, 1], [0, 1]], 1.0, rtol=1e-4)
    assert post["cuts"].dims == ("chain", "draw", "group", "cuts_event_0")
    assert np.all(np.diff(post["cuts"].values, axis=-1) > 0)


def test_three_level_program_end_to_end():
    from tests.conftest import three_level

    amortizer = am.compile(three_level, data=["y"], sizes={"region": (1, 3), "county": (1, 3), "house": (1, 4)},
                           network=am.NetworkConfig(summary_width=16, flow_hidden=16, flow_layers=2, flow="affine"))
    amortizer.fit(steps=30, batch_size=16, seed=0, progress=False)
    rows = np.array([0.1, 0.2, -0.3, 1.0, 1.2, 0.9])
    tree = amortizer.sample({"y": rows}, num_samples=200, seed=0,
                            index={"region": np.array(["north", "north", "north", "south", "south", "south"]),
                                   "county": np.array(["a", "a", "b", "c", "c", "d"])})
    post = tree["posterior"]
    assert post["alpha"].dims == ("chain", "draw", "region")
    assert list(post["region"].values) == ["north", "south"]
    assert post["beta"].dims == ("chain", "draw", "county")
    assert list(post["county"].values) == ["a", "b", "c", "d"]
    assert list(post["region_of_county"].values) == ["north", "north", "south", "south"]
    assert list(tree["observed_data"]["county_of_house"].values) == ["a", "a", "b", "c", "c", "d"]


def test_set_transformer_summary_end_to_end():
    from amortize.models import eight_schools

    amortizer = am.compile(eight_schools.model, data=["y", "sigma"], sizes=eight_schools.SIZES,
                           network=am.NetworkConfig(summary="set_transformer", summary_width=16,
                                                    attention_heads=2, flow_hidden=16, flow_layers=2,
                                                    flow="affine"))
    history = amortizer.fit(steps=60, batch_size=32, seed=0, progress=False)
    assert history["val_loss"][-1] < history["val_loss"][0]
    data = eight_schools.data()
    order = np.array([7, 6, 5, 4, 3, 2, 1, 0])
    a, _ = amortizer.draws(data, 500, seed=2)
    b, _ = amortizer.draws({k: v[order] for k, v in data.items()}, 500, seed=2)
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-4, atol=1e-4)  # attention pooling is invariant
    assert a["theta"].shape == (500, 8)
    # The standard errors are a design covariate: ArviZ's constant_data, not observed_data, so that
    # predictive plots find a replicate for every observed variable without var_names.
    tree = am.diagnostics.posterior_predictive(amortizer.sample(data, 400, seed=3, certify=False), amortizer, seed=0)
    assert list(tree["observed_data"].data_vars) == ["y"]
    np.testing.assert_array_equal(tree["constant_data"]["sigma"].values, eight_schools.SIGMA)
    assert list(tree["posterior_predictive"].data_vars) == ["y"]
    import arviz_plots as azp
    import matplotlib

    matplotlib.use("Agg")
    azp.plot_ppc_dist(tree)
    assert am.diagnostics.pooling_factors(tree, amortizer)["theta"].shape == (8,)


def test_user_errors_of_fit_save_and_load_are_amortize_errors(quick_two_level, tmp_path):
    for kwargs in ({"steps": 0}, {"batch_size": 0}, {"time_limit": -1}):
        with pytest.raises(am.TrainingError, match="positive"):
            quick_two_level.fit(progress=False, **kwargs)
    with pytest.raises(am.AmortizerFileError, match="does not exist"):
        quick_two_level.save(tmp_path / "missing" / "model.amortizer")
    with pytest.raises(am.AmortizerFileError, match="is a folder"):
        am.load(tmp_path)


def test_save_is_atomic(quick_two_level, tmp_path, monkeypatch):
    # A crash in the middle of writing leaves the earlier file intact and no temporary behind.
    import amortize.persist as persist

    path = tmp_path / "model.amortizer"
    quick_two_level.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(persist.cloudpickle, "dumps", crash)
    with pytest.raises(KeyboardInterrupt):
        quick_two_level.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.amortizer"]
    am.load(path)


def test_simulate_draws_a_test_data_set_that_sample_takes(quick_two_level):
    truth, data = quick_two_level.simulate({"group": 5, "obs": 3}, seed=4)
    assert truth["theta"].shape == (5,) and data["y"].shape == (5, 3)
    # The data were drawn around the true group effects with the true noise sd.
    residuals = (data["y"] - truth["theta"][:, None]) / truth["sigma"]
    assert np.all(np.abs(residuals) < 6)
    again, _ = quick_two_level.simulate({"group": 5, "obs": 3}, seed=4)
    np.testing.assert_array_equal(again["theta"], truth["theta"])
    tree = quick_two_level.sample(data, 100, certify=False)
    assert tree["posterior"].sizes["group"] == 5
    with pytest.raises(am.DataError, match="obs"):
        quick_two_level.simulate({"group": 5})
