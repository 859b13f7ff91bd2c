"""Design-focused training: simulations on the observed design, and the accuracy it buys per step."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.design import default_covariates
from amortize.models import conjugate_normal
from amortize.simulate import simulate

#: A wide compiled range, so that range training has many designs to learn and a design has few slots.
WIDE = {"group": (2, 40), "obs": (1, 20)}
#: The observed design of the accuracy test: five groups of unequal sizes.
N_OBS = [5, 1, 6, 2, 4]


def regression(n_group, n_obs, x=None, y=None):
    """Varying intercepts with a covariate ``x`` drawn from a design distribution during training."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("group", n_group, dim=-2):
        a = numpyro.sample("a", dist.Normal(mu, 0.5))
        with numpyro.plate("obs", n_obs, dim=-1):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
            numpyro.sample("y", dist.Normal(a + beta * x, 1.0), obs=y)


def design_data_sets(count=6, seed=7):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mu = rng.normal()
        theta = rng.normal(mu, conjugate_normal.TAU, len(N_OBS))
        out.append([rng.normal(theta[j], conjugate_normal.SIGMA, n) for j, n in enumerate(N_OBS)])
    return out


def worst_errors(amortizer, data_sets):
    """Worst |mean error| in exact sds and worst |sd ratio - 1| over mu and every theta_j of every data set."""
    mean_error, sd_error = 0.0, 0.0
    for i, groups in enumerate(data_sets):
        exact = conjugate_normal.exact_posterior(groups)
        draws, _ = amortizer.draws({"y": groups}, num_samples=8000, seed=i)
        means = np.append(draws["mu"].mean(), draws["theta"].mean(0))
        sds = np.append(draws["mu"].std(), draws["theta"].std(0))
        exact_means = np.append(exact["mu_mean"], exact["theta_mean"])
        exact_sds = np.append(exact["mu_sd"], exact["theta_sd"])
        mean_error = max(mean_error, np.max(np.abs(means - exact_means) / exact_sds))
        sd_error = max(sd_error, np.max(np.abs(sds / exact_sds - 1)))
    return mean_error, sd_error


def test_design_training_reaches_the_closed_form_in_fewer_steps():
    """Same bounds as range training's accuracy test (0.15 exact sd in mean, 15% in sd; Monte Carlo
    error 0.011 sd and 0.8% at 8000 draws), on six data sets of the trained design: design-focused
    training meets them after 1000 steps of 64; range training over 2-40 groups x 1-20 observations,
    same seed and steps, does not."""
    data_sets = design_data_sets()
    focused = am.compile(conjugate_normal.model, data=["y"], sizes=WIDE)
    focused.fit(steps=1000, batch_size=64, seed=0, progress=False, design={"y": data_sets[0]})
    assert focused.training_design.sizes == {"group": 5, "obs": 6}
    mean_error, sd_error = worst_errors(focused, data_sets)
    assert mean_error < 0.15 and sd_error < 0.15, (mean_error, sd_error)

    ranged = am.compile(conjugate_normal.model, data=["y"], sizes=WIDE)
    ranged.fit(steps=1000, batch_size=64, seed=0, progress=False)
    assert ranged.training_design is None
    mean_error, sd_error = worst_errors(ranged, data_sets)
    assert mean_error > 0.15 or sd_error > 0.15, (mean_error, sd_error)


def test_design_simulations_keep_sizes_and_condition_on_covariates():
    amortizer = am.compile(regression, data=["x", "y"], sizes={"group": (2, 8), "obs": (1, 10)})
    assert default_covariates(amortizer.graph) == ("x",)
    rng = np.random.default_rng(0)
    n_obs = [3, 7, 1]
    x = [rng.uniform(2, 3, n) for n in n_obs]  # far from the design distribution Normal(0, 1)
    design = amortizer.design_of({"x": x, "y": [np.zeros(n) for n in n_obs]})
    assert design.sizes == {"group": 3, "obs": 7}

    sim = jax.jit(lambda k: simulate(k, amortizer.graph, amortizer.factorization, 16, design))(jax.random.key(1))
    assert sim.data["y"].shape == (16, 3, 7, 1)
    np.testing.assert_array_equal(np.asarray(sim.masks["obs"]), np.broadcast_to(design.masks["obs"], (16, 3, 7)))
    np.testing.assert_array_equal(np.asarray(sim.data["x"][..., 0]), np.broadcast_to(design.covariates["x"], (16, 3, 7)))
    # The responses follow the conditioned covariates: y - a - beta x is the unit-variance noise.
    a = np.asarray(sim.latents["group"][..., 0])  # the group intercepts (unconstrained = constrained)
    beta = np.asarray(sim.latents["global"][:, 1])
    mask = design.masks["obs"]
    noise = (np.asarray(sim.data["y"][..., 0]) - a[..., None] - beta[:, None, None] * design.covariates["x"])[:, mask]
    assert abs(noise.std() - 1) < 4 * np.sqrt(1 / (2 * noise.size))  # sd's standard error, Gaussian noise
    # Masked-out slots are zero, and every simulation is valid.
    assert np.all(np.asarray(sim.data["y"][:, ~mask]) == 0) and bool(sim.valid.all())

    mixed = jax.jit(lambda k: simulate(k, amortizer.graph, amortizer.factorization, 16, design, 0.25))(
        jax.random.key(2))
    assert mixed.data["y"].shape == (16, 8, 10, 1)  # padded to the trained maxima
    np.testing.assert_array_equal(np.asarray(mixed.masks["obs"][12:, :3, :7]),
                                  np.broadcast_to(design.masks["obs"], (4, 3, 7)))
    assert not np.asarray(mixed.masks["obs"][12:, 3:]).any()
    sizes = np.asarray(mixed.masks["group"][:12]).sum(1)
    assert sizes.min() >= 2 and sizes.max() <= 8 and len(set(sizes.tolist())) > 1  # range rows vary


def test_design_errors_name_the_fix():
    amortizer = am.compile(regression, data=["x", "y"], sizes={"group": (2, 8), "obs": (1, 10)})
    with pytest.raises(am.DataError, match=r"plate `obs`.*sizes=\{'obs': \(1, 12\)\}"):
        amortizer.design_of({"x": [np.zeros(12), np.zeros(3)], "y": [np.zeros(12), np.zeros(3)]})
    with pytest.raises(am.DataError, match="`mu` is not a data site"):
        amortizer.design_of({"x": [np.zeros(2)] * 2, "y": [np.zeros(2)] * 2}, covariates=["mu"])
    with pytest.raises(am.AmortizeError, match="design_share"):
        amortizer.fit(steps=1, design={"x": [np.zeros(2)] * 2, "y": [np.zeros(2)] * 2}, design_share=0)


def test_a_new_design_replaces_the_last_one():
    amortizer = am.compile(regression, data=["x", "y"], sizes={"group": (2, 8), "obs": (1, 10)},
                           network=am.NetworkConfig(summary_width=8, flow_hidden=8, flow_layers=1))
    first = amortizer.design_of({"x": [np.zeros(2)] * 2, "y": [np.zeros(2)] * 2})
    amortizer.fit(steps=1, batch_size=4, design=first, progress=False)
    amortizer.fit(steps=1, batch_size=4, design={"x": [np.zeros(3)] * 3, "y": [np.zeros(3)] * 3}, progress=False)
    assert amortizer.training_design.sizes == {"group": 3, "obs": 3}
    amortizer.fit(steps=1, batch_size=4, progress=False)
    assert amortizer.training_design is None


def test_an_autoregressive_response_is_not_a_design_covariate():
    """Air traffic's y_{t+1} depends on y_t, but y depends on the latents: it is the response. Only the
    covariates u and w make the design; simulations on it draw y anew (differently for every data set)."""
    from amortize.models import air_traffic

    amortizer = am.compile(air_traffic.model, data=["u", "w", "y"], sizes=air_traffic.SIZES)
    assert default_covariates(amortizer.graph) == ("u", "w")
    rng = np.random.default_rng(0)
    panel = {n: rng.normal(size=(4, 6)) for n in ("u", "w", "y")}
    design = amortizer.design_of(panel)
    assert set(design.covariates) == {"u", "w"}
    sim = simulate(jax.random.key(0), amortizer.graph, amortizer.factorization, 4, design)
    y = np.asarray(sim.data["y"])
    assert not np.allclose(y[0], y[1])
