"""Self-consistency: zero for the exact posterior, the predicted variance for a widened one, and training with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import amortize as am
from amortize.models import conjugate_normal
from amortize.refine.consistency import block_log_weights
from amortize.simulate import simulate

TAU, SIGMA = conjugate_normal.TAU, conjugate_normal.SIGMA
SIZES = {"group": (2, 6), "obs": (1, 6)}


@pytest.fixture(scope="module")
def batch():
    amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=SIZES)
    graph, factorization = amortizer.graph, amortizer.factorization
    sim = jax.jit(lambda k: simulate(k, graph, factorization, 64))(jax.random.key(3))
    return graph, factorization, jax.device_get(sim)


def conditional_moments(sim):
    """Exact posterior of mu, and of every theta_j given mu (mean = a_j + b_j mu, sd l_j), per data set."""
    y, obs, group = sim.data["y"][..., 0], sim.masks["obs"], sim.masks["group"]
    n = obs.sum(-1).astype(float)
    ybar = np.where(n > 0, (y * obs).sum(-1) / np.maximum(n, 1), 0.0)
    marginal_var = TAU**2 + SIGMA**2 / np.maximum(n, 1)
    precision = 1.0 + np.sum(np.where(group, 1.0 / marginal_var, 0.0), axis=1)
    mu_mean = np.sum(np.where(group, ybar / marginal_var, 0.0), axis=1) / precision
    local_var = 1.0 / (1.0 / TAU**2 + n / SIGMA**2)
    return mu_mean, 1.0 / np.sqrt(precision), local_var * n * ybar / SIGMA**2, local_var / TAU**2, np.sqrt(local_var)


def draws_and_log_q(sim, k, widen, seed, mu=None):
    """K draws per data set from the exact posterior with every conditional sd times ``widen``, and their log q.

    With ``mu`` (the simulated globals), mu is held at it and only the locals are drawn.
    """
    rng = np.random.default_rng(seed)
    mu_mean, mu_sd, a, b, l_sd = conditional_moments(sim)
    batch, groups = sim.masks["group"].shape
    if mu is None:
        mu = mu_mean[:, None] + widen * mu_sd[:, None] * rng.normal(size=(batch, k))
        log_q_mu = stats.norm.logpdf(mu, mu_mean[:, None], widen * mu_sd[:, None])
    else:
        mu = np.broadcast_to(mu[:, None], (batch, k))
        log_q_mu = np.zeros((batch, k))
    mean = a[:, None] + b[:, None] * mu[..., None]
    theta = mean + widen * l_sd[:, None] * rng.normal(size=(batch, k, groups))
    log_q_theta = np.where(sim.masks["group"][:, None], stats.norm.logpdf(theta, mean, widen * l_sd[:, None]), 0.0)
    values = {"global": jnp.asarray(mu[..., None], jnp.float32), "group": jnp.asarray(theta[..., None], jnp.float32)}
    return values, {"global": jnp.asarray(log_q_mu, jnp.float32), "group": jnp.asarray(log_q_theta, jnp.float32)}


def test_log_weights_are_constant_under_the_exact_posterior(batch):
    """log p(u, y) - log q(u | y) = log p(y) for every draw: the variance is float32 rounding (1e-6 of ~30²)."""
    graph, factorization, sim = batch
    values, log_q = draws_and_log_q(sim, 8, 1.0, seed=0)
    parts = block_log_weights(graph, factorization, values, sim.data, sim.masks, log_q)
    total = np.asarray(parts["outer"] + parts["group"].sum(-1))
    assert np.all(np.var(total, axis=1) < 1e-6)
    # Given the simulated globals, every group's local weight is constant: log p(y_j | mu).
    values, log_q = draws_and_log_q(sim, 8, 1.0, seed=1, mu=sim.latents["global"][:, 0])
    local = np.asarray(block_log_weights(graph, factorization, values, sim.data, sim.masks, log_q)["group"])
    assert np.all(np.var(local, axis=1)[sim.masks["group"]] < 1e-8)


def test_widened_posterior_has_the_predicted_variance(batch):
    """q = exact with every conditional sd times r: log w = c - (r² - 1)/2 Σ z² over d dims, z iid N(0, 1), so
    Var log w = d (r² - 1)² / 2, and the K-draw (ddof 0) variance has mean (K - 1)/K of it. Checked across the
    64 data sets within 4 standard errors of their mean."""
    graph, factorization, sim = batch
    r, k = 1.3, 50
    values, log_q = draws_and_log_q(sim, k, r, seed=2)
    parts = block_log_weights(graph, factorization, values, sim.data, sim.masks, log_q)
    total = np.asarray(parts["outer"] + parts["group"].sum(-1))
    d = 1 + sim.masks["group"].sum(1)
    ratio = np.var(total, axis=1) / ((k - 1) / k * d * (r**2 - 1) ** 2 / 2)
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / np.sqrt(ratio.size), ratio.mean()


def test_training_with_self_consistency_records_its_terms():
    """A short run with the term on: it is 0 before its start, weighted after, and finite throughout."""
    amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=SIZES,
                           network=am.NetworkConfig(summary_width=16, flow_hidden=16, flow_layers=2))
    history = amortizer.fit(steps=100, batch_size=16, seed=0, progress=False,
                            self_consistency=am.SelfConsistency(draws=4, local_draws=4, start=0.5, ramp=0.0),
                            config=am.TrainConfig(validation_every=25))
    assert np.all(np.isfinite(history["loss"])) and not history["skipped"].any()
    assert np.all(history["val_sc_weight"] == 1.0)  # validation sees the full term
    assert np.all(history["val_sc_joint"] > 0) and np.all(history["val_sc_local"] > 0)


def test_bad_settings_and_markov_chains_are_refused():
    with pytest.raises(am.RefineError, match="draws >= 2"):
        am.SelfConsistency(draws=1)
    with pytest.raises(am.RefineError, match="start"):
        am.SelfConsistency(start=1.0)
    with pytest.raises(am.RefineError, match="needs data="):
        am.SelfConsistency(simulations=False)
    with pytest.raises(am.RefineError, match="data_weight must be positive"):
        am.SelfConsistency(data_weight=0.0)
    from amortize.models import gaussian_hmm

    amortizer = am.compile(gaussian_hmm.model, data=["y", "count"], sizes=gaussian_hmm.SIZES)
    with pytest.raises(am.RefineError, match="hidden Markov chain"):
        amortizer.fit(steps=1, self_consistency=True, progress=False)


def test_self_consistency_on_the_data_sharpens_a_short_training():
    """Conjugate model trained on one data set's design for 300 steps of 64: with the term on those data
    (weight 100, 16 draws), every mean is within 0.1 exact sd and every sd within 10% of the closed form
    (Monte Carlo error at 8000 draws: 0.011 sd, 0.8%); the same run without it is more than 0.15 sd off."""
    from tests.test_design import WIDE, design_data_sets, worst_errors

    groups = design_data_sets()[2]
    errors = {}
    for name, consistency in (("plain", None),
                              ("sc", am.SelfConsistency(data={"y": groups}, simulations=False, draws=16))):
        amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=WIDE)
        amortizer.fit(steps=300, batch_size=64, seed=0, progress=False, design={"y": groups},
                      self_consistency=consistency)
        errors[name] = worst_errors(amortizer, [groups])
    assert errors["sc"][0] < 0.1 and errors["sc"][1] < 0.1, errors
    assert errors["plain"][0] > 0.15, errors


def test_mixture_indicators_are_summed_out_exactly():
    """The enumerated joint log weight of the explicit mixture equals the plain log weight of the same
    mixture written with the indicators summed out (NumPyro's MixtureSameFamily), at the same global draws
    and log q, to float32 rounding; the drawn indicators do not change it."""
    from amortize.models import gaussian_mixture
    from amortize.refine.consistency import enumerated_log_weights

    explicit = am.compile(gaussian_mixture.model, data=["y"], sizes=gaussian_mixture.SIZES)
    marginal = am.compile(gaussian_mixture.marginal_model, data=["y"], sizes=gaussian_mixture.SIZES)
    sim = jax.device_get(simulate(jax.random.key(0), explicit.graph, explicit.factorization, 4))
    rng = np.random.default_rng(0)
    k, n = 5, sim.masks["obs"].shape[1]
    g = jnp.asarray(rng.normal(size=(4, k, sim.latents["global"].shape[-1])), jnp.float32)
    log_q = {"global": jnp.asarray(rng.normal(size=(4, k)), jnp.float32)}
    expected = block_log_weights(marginal.graph, marginal.factorization, {"global": g}, sim.data, sim.masks,
                                 log_q)["outer"]
    for seed in (1, 2):
        z = jnp.asarray(np.random.default_rng(seed).integers(0, 2, size=(4, k, n, 1)), jnp.float32)
        got = enumerated_log_weights(explicit.graph, explicit.factorization, {"global": g, "z": z}, sim.data,
                                     sim.masks, log_q | {"z": jnp.zeros((4, k, n))}, classes=2)
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-3)
