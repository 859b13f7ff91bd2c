"""Amortized model comparison: exact posterior model probabilities, calibration, transfer, bad input."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.models import hierarchical_comparison as hc

SIZES = {"group": (2, 10), "obs": (1, 10)}
NETWORK = am.NetworkConfig(summary_width=64, embed_dim=32, pooled_dim=32)


@pytest.fixture(scope="module")
def trained():
    comparison = am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"],
                            sizes=SIZES, network=NETWORK)
    comparison.fit(steps=3000, batch_size=128, seed=0, progress=False)
    return comparison


def test_learned_probabilities_match_the_exact_ones(trained):
    # Held-out data sets of every size in range (ragged groups included): the
    # closed-form marginal likelihoods give the exact probabilities.
    batch = trained.simulate(5000, seed=101)
    learned = trained.probabilities(batch.data, batch.masks)
    exact = hc.exact_model_probabilities(batch.data["y"][..., 0], batch.masks["obs"])
    np.testing.assert_allclose(learned.sum(1), 1.0, atol=1e-5)
    assert np.mean(np.abs(learned[:, 1] - exact[:, 1])) <= 0.05
    counts = batch.masks["obs"].sum(-1)
    assert counts[batch.masks["group"]].min() == 1 and counts.max() == 10  # sizes really vary


def test_validation_reports_calibration_and_writes_plots(trained, tmp_path):
    check = trained.validate(20000, seed=7, path=tmp_path)
    assert check.names == ["pooled", "hierarchical"]
    assert check.max_ece <= 0.02
    # Exact probabilities reach about 0.70 here (closely nested models): the
    # classifier must come close, and its confusion matrix must count every data set.
    assert 0.66 <= check.accuracy <= 0.75
    assert check.confusion.sum() == check.n and check.n >= 19900
    assert {p.name for p in tmp_path.iterdir()} == {"calibration.png", "confusion.png", "comparison.json"}


def test_predict_accepts_ragged_groups_and_agrees_with_batches(trained):
    rng = np.random.default_rng(0)
    ragged = [rng.normal(0.3, 1.0, size=n) for n in (1, 4, 9, 2)]
    single = trained.predict({"y": ragged})
    assert list(single) == ["pooled", "hierarchical"]
    assert sum(single.values()) == pytest.approx(1.0, abs=1e-6)
    padded = np.zeros((1, 10, 10, 1), np.float32)
    mask = np.zeros((1, 10, 10), bool)
    for j, values in enumerate(ragged):
        padded[0, j, : len(values), 0] = values
        mask[0, j, : len(values)] = True
    direct = trained.probabilities({"y": padded}, {"group": mask.any(-1), "obs": mask})[0]
    np.testing.assert_allclose(list(single.values()), direct, atol=1e-5)
    many = trained.predict_many([{"y": ragged}, {"y": rng.normal(size=(6, 3))}, {"y": ragged}])
    assert many.shape == (3, 2)
    np.testing.assert_allclose(many[0], direct, atol=1e-5)
    np.testing.assert_allclose(many[2], many[0], atol=1e-6)


def test_strongly_separated_data_get_confident_probabilities(trained):
    # Group means 3 sd apart with 10 observations each are impossible under pooling.
    y = np.repeat(np.array([-1.5, 1.5, -1.5, 1.5, 0.0, 1.5])[:, None], 10, axis=1)
    y = y + np.random.default_rng(1).normal(0, 1.0, size=y.shape)
    assert trained.predict({"y": y})["hierarchical"] > 0.95


def test_fine_tuning_starts_from_the_trained_weights(trained):
    bigger = trained.with_sizes({"group": (2, 20), "obs": (1, 20)})
    assert bigger.sizes == {"group": (2, 20), "obs": (1, 20)}
    before = trained.predict({"y": np.ones((3, 4))})
    history = bigger.fit(steps=25, batch_size=64, seed=3, progress=False,
                         config=am.TrainConfig(validation_every=25))
    # An untrained classifier scores log 2 = 0.693 per data set; a transferred one
    # starts near the trained loss (about 0.55 here).
    assert history["val_loss"][0] < 0.62
    assert trained.predict({"y": np.ones((3, 4))}) == before  # the original is untouched


def test_simulation_is_reproducible_and_draws_models_from_the_prior():
    comparison = am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"],
                            sizes=SIZES, prior={"pooled": 0.8, "hierarchical": 0.2})
    first, second = comparison.simulate(2000, seed=5), comparison.simulate(2000, seed=5)
    np.testing.assert_array_equal(first.data["y"], second.data["y"])
    np.testing.assert_array_equal(first.model_index, second.model_index)
    share = np.mean(first.model_index == 0)
    assert abs(share - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 2000)


def _other_shape(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("group", n_group, dim=-2), numpyro.plate("obs", n_obs, dim=-1):
        numpyro.sample("y", dist.Normal(mu, 1).expand([2]).to_event(1), obs=y)


def _no_groups(n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("obs", n_obs):
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)


def _other_site(n_group, n_obs, z=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("group", n_group, dim=-2), numpyro.plate("obs", n_obs, dim=-1):
        numpyro.sample("z", dist.Normal(mu, 1), obs=z)


def _broken(n_group, n_obs, y=None):
    raise RuntimeError("simulator crashed")


@pytest.mark.parametrize("other, message", [
    (_other_shape, r"Data site `y` has plates .* event shape \(\) in model `pooled` but .* event shape \(2,\) in model `other`"),
    (_no_groups, r"Model `other`: "),
    (_other_site, r"Model `other`: .*`y`"),
    (_broken, r"Model `other`: The program failed when traced .*RuntimeError: simulator crashed"),
])
def test_incompatible_or_failing_models_are_named(other, message):
    with pytest.raises(am.ModelError, match=message):
        am.compare({"pooled": hc.pooled, "other": other}, data=["y"], sizes=SIZES)


@pytest.mark.parametrize("kwargs, message", [
    (dict(models={"only": hc.pooled}), "at least two named models"),
    (dict(prior=[0.7, 0.7]), "must sum to 1"),
    (dict(prior={"pooled": 0.5, "nested": 0.5}), r"prior names \['nested'\]"),
])
def test_bad_arguments_get_clear_errors(kwargs, message):
    arguments = dict(models={"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"], sizes=SIZES)
    arguments.update(kwargs)
    with pytest.raises(am.ModelError, match=message):
        am.compare(**arguments)


def test_bad_data_and_untrained_use_are_reported(trained):
    with pytest.raises(am.DataError, match="NaN"):
        trained.predict({"y": np.array([[0.1, np.nan], [0.2, 0.3]])})
    with pytest.raises(am.DataError, match="Unknown data site `x`"):
        trained.predict({"x": np.zeros((2, 2))})
    untrained = am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical}, data=["y"], sizes=SIZES)
    with pytest.raises(am.AmortizeError, match="not trained yet"):
        untrained.predict({"y": np.zeros((2, 2))})


def test_save_and_load_round_trip(trained, tmp_path):
    path = tmp_path / "nested.comparison"
    trained.save(path)
    loaded = am.load(path)
    assert isinstance(loaded, am.ModelComparison) and loaded.names == trained.names
    data = {"y": [np.array([0.2, -1.0, 0.4]), np.array([1.5]), np.array([0.3, 0.9])]}
    assert loaded.predict(data) == trained.predict(data)
    np.testing.assert_allclose(loaded.history["val_loss"], trained.history["val_loss"])
    again = am.load(path, model={"pooled": hc.pooled, "hierarchical": hc.hierarchical})
    assert again.predict(data) == trained.predict(data)
    with pytest.raises(am.AmortizerFileError, match=r"comparison of the models \['pooled', 'hierarchical'\]"):
        am.load(path, model=hc.pooled)
    with pytest.raises(am.AmortizerFileError, match=r"Model `hierarchical` does not match .*site `sigma`"):
        am.load(path, model={"pooled": hc.pooled, "hierarchical": hc.normal_noise})


def test_probabilities_ignore_the_order_of_groups_and_of_observations(trained):
    rng = np.random.default_rng(11)
    groups = [rng.normal(rng.normal(0, 0.5), 1.0, size=n) for n in (3, 7, 1, 5, 9)]
    shuffled = [rng.permutation(groups[j]) for j in rng.permutation(len(groups))]
    a, b = trained.predict({"y": groups}), trained.predict({"y": shuffled})
    np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-5)
