"""Certificates and refine= on the conjugate two-level model, whose posterior is known in closed form.

One amortizer, deliberately trained for only a few hundred steps on 2-120
groups, is wide of the exact posterior; the program's density must certify
where that is harmless and correct it to the closed form within Monte Carlo
error.
"""

import math

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.models import conjugate_normal

SIZES = {"group": (2, 120), "obs": (1, 6)}


@pytest.fixture(scope="module")
def short_trained():
    """The conjugate model after 300 steps of 32 (about half a minute): calibrated-ish, far from sharp."""
    amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=SIZES,
                           network=am.NetworkConfig(summary_width=32, flow_hidden=32, flow_layers=2))
    amortizer.fit(steps=300, batch_size=32, seed=0, progress=False)
    return amortizer


def _groups(n_groups, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.3, conjugate_normal.TAU, n_groups)
    return [rng.normal(t, conjugate_normal.SIGMA, rng.integers(1, 7)) for t in theta]


def _errors(tree, exact):
    posterior = tree["posterior"]
    mu = posterior["mu"].values.reshape(-1)
    theta = posterior["theta"].values.reshape(-1, len(exact["theta_sd"]))
    means = np.append(mu.mean(), theta.mean(0))
    sds = np.append(mu.std(), theta.std(0))
    exact_means = np.append(exact["mu_mean"], exact["theta_mean"])
    exact_sds = np.append(exact["mu_sd"], exact["theta_sd"])
    return np.abs(means - exact_means) / exact_sds, np.abs(sds / exact_sds - 1)


@pytest.mark.parametrize("n_groups", [5, 40])
def test_psis_matches_the_closed_form_where_the_amortized_draws_do_not(short_trained, n_groups):
    groups = _groups(n_groups, seed=n_groups)
    exact = conjugate_normal.exact_posterior(groups)
    num = 4000
    refined = short_trained.sample({"y": groups}, num, seed=1, refine="psis")
    certificate = am.certificate(refined)
    # Plain weights where they are reliable and keep a quarter of the draws, else per group.
    assert certificate.method == ("importance (joint)" if n_groups == 5 else "hierarchical importance")
    assert certificate.ok
    # Monte Carlo error of a mean of N draws resampled from S weighted ones with effective
    # size ESS: variance (1/ESS + 1/N) posterior variances; an sd's relative error ~ 1/sqrt(2 ESS).
    ess = certificate.relative_ess * certificate.num_draws
    mean_se = math.sqrt(1 / ess + 1 / num)
    sd_se = math.sqrt(1 / (2 * ess) + 1 / (2 * num))
    mean_error, sd_error = _errors(refined, exact)
    assert np.all(mean_error < 3 * mean_se), (mean_error.max(), mean_se)
    assert np.all(sd_error < 0.05 + 3 * sd_se), (sd_error.max(), sd_se)
    # The same amortizer's own draws miss these bounds.
    raw = short_trained.sample({"y": groups}, num, seed=1, certify=False)
    raw_mean_error, raw_sd_error = _errors(raw, exact)
    raw_se = math.sqrt(1 / num)
    assert np.any(raw_mean_error > 3 * raw_se) or np.any(raw_sd_error > 0.05 + 3 * raw_se)


def test_hierarchical_importance_keeps_its_ess_at_a_hundred_groups(short_trained):
    # psis resamples, so it wants the hierarchical weights' ESS (an unrefined certificate is a verdict
    # and may stop at the plain weights, test_a_verdict_needs_no_inner_passes_...).
    tree = short_trained.sample({"y": _groups(110, seed=3)}, 1000, seed=2, refine="psis", proposals=1000)
    certificate = am.certificate(tree)
    assert certificate.method == "hierarchical importance" and certificate.inner_draws >= 4
    assert certificate.relative_ess > 0.10
    # Plain importance sampling over all 111 latents on the same proposal is reported beside it.
    assert 0 <= certificate.joint_relative_ess < certificate.relative_ess
    assert set(certificate.levels) == {"group"}


def test_a_verdict_needs_no_inner_passes_where_plain_weights_confirm_q(short_trained):
    # An unrefined certificate and refine="nuts" resample nothing and ask only whether q is confirmed. On
    # the same draws, where the plain weights' k̂ is within the threshold (but they keep too few draws for
    # resampling), the weights for resampling go on to the hierarchical ones and the verdict stops at the
    # plain ones, with the same answer.
    import jax

    from amortize.prepare import prepare_data
    from amortize.refine import importance

    prepared = prepare_data(short_trained.graph, {"y": _groups(40, seed=40)})
    draw = short_trained.latent_sampler()
    key = jax.random.key(5)
    proposal = draw(jax.random.key(4), prepared.data, prepared.masks, 1000)
    full = importance(draw, short_trained.graph, short_trained.factorization, prepared, key,
                      num_draws=1000, proposal=proposal, resample_to=1000).certificate
    verdict = importance(draw, short_trained.graph, short_trained.factorization, prepared, key,
                         num_draws=1000, proposal=proposal).certificate
    assert full.method == "hierarchical importance"
    assert full.joint_khat <= full.threshold and full.joint_relative_ess < 0.25  # why the full one went on
    assert verdict.method == "importance (joint)" and verdict.ok == full.ok
    assert verdict.khat == full.joint_khat


def test_data_far_outside_the_simulations_fail_the_certificate_with_a_warning(short_trained):
    groups = [1000.0 * g for g in _groups(10, seed=4)]
    with pytest.warns(am.CertificateWarning, match="does not confirm"):
        tree = short_trained.sample({"y": groups}, 1000, seed=0)
    certificate = am.certificate(tree)
    assert not certificate.ok
    assert certificate.khat > 0.7


def test_certificate_attributes_and_the_off_switch(short_trained):
    data = {"y": _groups(6, seed=5)}
    tree = short_trained.sample(data, 400, seed=0)
    attrs = tree["posterior"].attrs
    assert attrs["refine"] == "none"
    assert {"certificate_khat", "certificate_relative_ess", "certificate_group_khat"} <= set(attrs)
    # The certificate's draws are the same draws an uncertified call returns.
    plain = short_trained.sample(data, 400, seed=0, certify=False)
    assert "certificate_khat" not in plain["posterior"].attrs
    np.testing.assert_array_equal(plain["posterior"]["mu"].values, tree["posterior"]["mu"].values)
    with pytest.raises(am.RefineError, match="certify=True"):
        am.certificate(plain)


def test_ten_draws_just_work(short_trained):
    tree = short_trained.sample({"y": _groups(6, seed=6)}, 10, seed=0)
    assert tree["posterior"].sizes["chain"] * tree["posterior"].sizes["draw"] == 10
    assert am.certificate(tree).num_draws >= 1000


def test_auto_says_which_method_ran_and_why(short_trained):
    tree = short_trained.sample({"y": _groups(5, seed=7)}, 1000, seed=0, refine="auto")
    attrs = tree["posterior"].attrs
    assert attrs["refine"] == "psis"
    assert "k̂" in attrs["refine_reason"]


def test_nuts_refinement_matches_the_closed_form(short_trained):
    groups = _groups(5, seed=8)
    exact = conjugate_normal.exact_posterior(groups)
    tree = short_trained.sample({"y": groups}, 2000, seed=0, refine="nuts")
    attrs = tree["posterior"].attrs
    assert attrs["refine"] == "nuts" and attrs["divergences"] == 0 and attrs["max_rhat"] < 1.02
    assert "sample_stats" in tree.children
    mean_error, sd_error = _errors(tree, exact)
    # NUTS draws are autocorrelated: allow an effective size of a quarter of the draws.
    assert np.all(mean_error < 3 * math.sqrt(4 / 2000))
    assert np.all(sd_error < 0.1)
    # Another data set of the same sizes (the groups in reverse order: if the compiled run had kept
    # the first data set, every group's mean would be off) reuses the compiled run and matches its
    # own closed form.
    reordered = groups[::-1]
    again = short_trained.sample({"y": reordered}, 2000, seed=1, refine="nuts")
    assert len([key for key in short_trained._densities if key[0] == "nuts"]) == 1
    mean_error, sd_error = _errors(again, conjugate_normal.exact_posterior(reordered))
    assert np.all(mean_error < 3 * math.sqrt(4 / 2000))
    assert np.all(sd_error < 0.1)


def test_bad_refine_requests_are_refused(short_trained):
    data = {"y": _groups(5, seed=9)}
    with pytest.raises(am.RefineError, match="not a refinement"):
        short_trained.sample(data, 100, refine="exact")
    with pytest.raises(am.RefineError, match="at least 100"):
        short_trained.sample(data, 20, refine="psis", proposals=50)
    with pytest.raises(am.RefineError, match="nuts_options"):
        short_trained.sample(data, 100, refine="nuts", nuts_options={"warmup": 5})


class SimulatorOnly(dist.Normal):
    """A Normal that can only simulate: what a black-box simulator looks like to amortize."""

    def log_prob(self, value):
        raise NotImplementedError


def simulator_program(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("group", n_group, dim=-2):
        theta = numpyro.sample("theta", dist.Normal(mu, 0.5))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", SimulatorOnly(theta, 1.0), obs=y)


def test_a_program_without_a_density_is_refused_by_name():
    # The factorization and the certificate both need every site's log density.
    with pytest.raises(am.ModelError, match="`y`.*log_prob"):
        am.compile(simulator_program, data=["y"], sizes={"group": (2, 6), "obs": (1, 6)})


def _bounded(n_obs, y=None):
    """y ~ Uniform(0, theta): every draw of theta below the largest observation has density zero."""
    theta = numpyro.sample("theta", dist.Exponential(0.2))
    with numpyro.plate("obs", n_obs):
        numpyro.sample("y", dist.Uniform(0.0, theta), obs=y)


def test_draws_outside_the_programs_support_never_pass_silently():
    amortizer = am.compile(_bounded, data=["y"], sizes={"obs": (5, 20)})
    amortizer.fit(steps=30, batch_size=16, seed=0, progress=False)  # a poor q: many theta below max(y)
    y = np.linspace(0.5, 9.0, 12).astype(np.float32)
    with pytest.warns(am.CertificateWarning, match="density zero under the program"):
        tree = amortizer.sample({"y": y}, num_samples=1000, seed=0)
    certificate = am.certificate(tree)
    below = float(np.mean(tree.posterior["theta"].values <= y.max()))
    assert below > 0.01
    # The certificate counts the same draws (its 1000 draws are these).
    assert certificate.zero_density == pytest.approx(below, abs=1e-9)
    refined = amortizer.sample({"y": y}, num_samples=1000, seed=0, refine="psis")
    assert np.all(refined.posterior["theta"].values > y.max())


def test_nuts_moves_a_cholesky_factor_in_the_networks_coordinates():
    # A Cholesky factor of a 2×2 correlation matrix is (2, 2) constrained and one number unconstrained
    # (sleepstudy's random-effect correlation): NUTS moves the networks' packed coordinates, and its
    # draws come back as valid Cholesky factors.
    def correlated(n_group, y=None):
        L = numpyro.sample("L", dist.LKJCholesky(2, concentration=2.0))
        with numpyro.plate("group", n_group):
            numpyro.sample("y", dist.MultivariateNormal(np.zeros(2), scale_tril=L), obs=y)

    from amortize.prepare import prepare_data
    from amortize.refine.sampling import NUTS_DEFAULTS, _nuts

    amortizer = am.compile(correlated, data=["y"], sizes={"group": (5, 20)})
    (factor,) = amortizer.factorization
    rng = np.random.default_rng(0)
    y = rng.multivariate_normal(np.zeros(2), [[1.0, 0.8], [0.8, 1.0]], size=20)
    prepared = prepare_data(amortizer.graph, {"y": y})
    # Starting draws in the packed coordinate (one number for a 2×2 correlation's Cholesky factor).
    values = {factor.name: rng.normal(0.5, 0.5, (1, 400, 1)).astype(np.float32)}
    posterior = _nuts(values, None, prepared, amortizer.graph, amortizer.factorization, 400, 0, 2,
                      dict(NUTS_DEFAULTS, _given=("num_warmup",), num_warmup=200), {}, None, None)
    L = posterior.draws["L"]
    assert L.shape == (400, 2, 2)
    np.testing.assert_allclose(np.sum(L**2, axis=-1), 1.0, rtol=1e-5)  # rows of unit length
    assert np.all(L[:, 0, 1] == 0)
    # The correlation's exact posterior by quadrature: LKJ(η = 2) prior ∝ 1 − ρ², bivariate normal
    # likelihood with unit variances. NUTS draws are autocorrelated: allow an effective size of a
    # quarter of them (Monte Carlo se of the mean sd/√100, of the sd about 1/√200 relative).
    rho = np.linspace(-0.999, 0.999, 20001)
    quadratic = (np.sum(y[:, 0] ** 2) - 2 * rho * np.sum(y[:, 0] * y[:, 1]) + np.sum(y[:, 1] ** 2))
    log_post = np.log1p(-rho**2) - 0.5 * len(y) * np.log1p(-rho**2) - quadratic / (2 * (1 - rho**2))
    density = np.exp(log_post - log_post.max())
    density /= density.sum()
    exact_mean = np.sum(rho * density)
    exact_sd = np.sqrt(np.sum((rho - exact_mean) ** 2 * density))
    draws = L[:, 1, 0]
    assert abs(draws.mean() - exact_mean) < 3 * exact_sd / np.sqrt(100), (draws.mean(), exact_mean)
    assert abs(draws.std() / exact_sd - 1) < 3 / np.sqrt(200), (draws.std(), exact_sd)
