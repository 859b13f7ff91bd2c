"""The air-traffic AR(1) panel: an ordered level simulated, summarized and sampled."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import amortize as am
from amortize.build import _causal_window
from amortize.models import air_traffic
from amortize.simulate import simulate, unpack_factor

DATA = ["u", "w", "y"]
SIZES = {"country": (2, 5), "time": (3, 8)}


def test_simulated_series_follow_the_program_step_by_step():
    amortizer = am.compile(air_traffic.model, data=DATA, sizes=SIZES)
    graph, factors = amortizer.graph, {f.name: f for f in amortizer.factorization}
    sim = jax.device_get(simulate(jax.random.key(0), graph, amortizer.factorization, 256))
    local = unpack_factor(sim.latents["country"], factors["country"], graph)
    u, w, y = (sim.data[n][..., 0] for n in DATA)  # (B, country, time), plate order
    steps = sim.masks["time"]
    assert steps.shape == y.shape
    # Real steps are a prefix of each series: a shorter series is a longer one's start.
    assert np.all(np.diff(steps.astype(int), axis=-1) <= 0)
    first = (y[..., 0] - 0.5)[steps[..., 0]]
    mean = (local["alpha"][..., None] + y[..., :-1] * local["beta"][..., None]
            + u[..., :-1] * local["gamma"][..., None] + w[..., :-1] * local["delta"][..., None])
    later = ((y[..., 1:] - mean) / np.exp(local["log_sigma"])[..., None])[steps[..., 1:]]
    # Each is a standard normal sample if time runs along the right axis and
    # every step sees its predecessor; 5 standard errors of the mean and variance.
    for z in (first, later):
        n = z.size
        assert n > 200
        assert abs(z.mean()) < 5 / np.sqrt(n)
        assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)


def test_ordered_inputs_pair_each_step_with_its_predecessors():
    x = jnp.arange(2 * 4 * 2, dtype=jnp.float32).reshape(1, 2, 4, 2)  # (B, series, steps, features)
    mask = jnp.array([[[True, True, True, False], [True, True, False, False]]])
    current, previous, exists = _causal_window([x[..., :1], x[..., 1:]], mask, window=2)
    np.testing.assert_array_equal(current, x)
    np.testing.assert_array_equal(previous[:, :, 1:], x[:, :, :-1])
    np.testing.assert_array_equal(previous[:, :, 0], 0.0)
    np.testing.assert_array_equal(exists[..., 0], [[[0, 1, 1, 1], [0, 1, 1, 0]]])
    # A wider window adds the step before that, with its own indicator.
    current, lag1, lag2, exists = _causal_window([x], mask, window=3)
    np.testing.assert_array_equal(lag1, previous)
    np.testing.assert_array_equal(lag2[:, :, 2:], x[:, :, :-2])
    np.testing.assert_array_equal(lag2[:, :, :2], 0.0)
    np.testing.assert_array_equal(exists[..., 1], [[[0, 0, 1, 1], [0, 0, 1, 1]]])  # step t - 2 is real


def test_window_sets_the_ordered_levels_input_width():
    graph_inputs = {}
    for window in (2, 4):
        amortizer = am.compile(air_traffic.model, data=DATA, sizes=SIZES,
                               network=am.NetworkConfig(ordered_window=window))
        level = {lv.name: lv for lv in amortizer.spec.levels}["time"]
        graph_inputs[window] = (level.data_features, level.input_features)
        country = {lv.name: lv for lv in amortizer.spec.levels}["country"]
        assert country.window == 1  # a set, not a series
    assert graph_inputs == {2: (6, 7), 4: (12, 15)}  # 3 data sites × window, + window - 1 indicators
    with pytest.raises(ValueError, match="ordered_window must be at least 2"):
        am.NetworkConfig(ordered_window=1)


def test_ragged_panel_is_sampled_with_plate_dims(tmp_path):
    network = am.NetworkConfig(summary_width=16, embed_dim=8, pooled_dim=8, flow_hidden=16, flow_layers=2)
    amortizer = am.compile(air_traffic.model, data=DATA, sizes=SIZES, network=network)
    amortizer.fit(steps=50, batch_size=16, seed=0, progress=False)
    rng = np.random.default_rng(1)
    lengths = [3, 8, 5]
    data = {n: [rng.normal(size=k) for k in lengths] for n in DATA}
    tree = amortizer.sample(data, num_samples=100, seed=0, certify=False)  # layout, not the certificate
    posterior = tree["posterior"]
    assert posterior["beta"].dims == ("chain", "draw", "country")
    assert posterior["mu_sigma"].shape[:2] == (4, 25)
    assert np.isfinite(posterior["alpha"].values).all()
    observed = tree["observed_data"]["y"]
    assert observed.sizes["time"] == sum(lengths)
    # The draws depend on the series' order in time: reversing one changes them.
    reversed_data = {n: [v[::-1] for v in values] for n, values in data.items()}
    again = amortizer.sample(reversed_data, num_samples=100, seed=0, certify=False)["posterior"]
    assert not np.allclose(again["beta"].values, posterior["beta"].values)

    # The ordered level survives saving: same draws under the same seed.
    amortizer.save(tmp_path / "air.amortizer")
    loaded = am.load(tmp_path / "air.amortizer")
    assert loaded.graph.plates["time"].ordered
    np.testing.assert_array_equal(loaded.draws(data, 40, seed=3)[0]["beta"], amortizer.draws(data, 40, seed=3)[0]["beta"])

    # Bad input: a covariate left out, a series longer than trained.
    with pytest.raises(am.DataError, match=r"Data site `u` .* is missing"):
        amortizer.sample({"w": data["w"], "y": data["y"]}, num_samples=12)
    longer = {n: values + [rng.normal(size=11)] for n, values in data.items()}
    with pytest.warns(am.AmortizationGapWarning, match=r"Plate `time` has .* 11 .*outside the trained range \[3, 8\]"):
        amortizer.draws(longer, num_samples=12)

    # The validation report of an ordered level adds the one-step-ahead series figure.
    report = am.diagnostics.validate(amortizer, tmp_path / "report", data=data, num_datasets=8, sbc_draws=10,
                                     num_samples=100)
    assert {"series.png", "series.json"} <= set(report.files)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert 0.0 <= summary["series"]["y"]["coverage_90"] <= 1.0
    assert "One-step-ahead predictive along `time`" in (tmp_path / "report" / "report.md").read_text()


def test_program_on_a_ragged_panel_scores_the_real_years_only():
    from numpyro.infer.util import log_density

    from amortize.convert import padded_from_prepared
    from amortize.prepare import prepare_data
    from amortize.graph import graph_for
    from amortize.padded_program import masked_program, program_arguments

    graph = graph_for(air_traffic.model, DATA)
    rng = np.random.default_rng(2)
    data = {n: [rng.normal(size=k) for k in (6, 9, 4)] for n in DATA}
    padded = padded_from_prepared(prepare_data(graph, data), graph)
    params = {name: jnp.full((3,), 0.1) for name in air_traffic.LOCAL}
    params |= {name: jnp.asarray(0.3) for name in air_traffic.HYPER}

    def joint(padded):
        kwargs = program_arguments(graph, padded)
        return float(log_density(masked_program(graph, padded), (), kwargs, params)[0])

    base = joint(padded)
    step = padded.masks["time"]
    assert step.shape == (3, 9) and step.sum() == 19
    garbage = {n: np.where(step, v, 50.0) for n, v in padded.data.items()}
    assert joint(dataclasses.replace(padded, data=garbage)) == pytest.approx(base, rel=1e-6)
    # A real year does count: y of the last real year of the shortest series.
    moved = {n: v.copy() for n, v in padded.data.items()}
    moved["y"][2, 3] += 1.0
    assert abs(joint(dataclasses.replace(padded, data=moved)) - base) > 0.1


def test_long_format_csv_becomes_one_series_per_country(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_text("country,year,y,u,w\nDE,2011,0.2,1,2\nAT,2010,0.1,0,0\nDE,2010,0.3,3,4\nAT,2011,0.5,1,1\nAT,2012,0.7,2,2\n")
    data, coords = air_traffic.load_csv(path)
    assert coords == {"country": ["AT", "DE"]}
    np.testing.assert_allclose(data["y"][0], [0.1, 0.5, 0.7])
    np.testing.assert_allclose(data["u"][1], [3.0, 1.0])  # DE sorted by year
    path.write_text("country,year,y,u,w\nDE,2010,0.3,,4\n")
    with pytest.raises(ValueError, match=r"line 2: a value of y, u, w is not a number"):
        air_traffic.load_csv(path)
    path.write_text("country,year,y,u\nDE,2010,0.3,1\n")
    with pytest.raises(ValueError, match=r"no column w"):
        air_traffic.load_csv(path)
