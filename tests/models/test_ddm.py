"""The diffusion decision model: Wiener density, distribution function, exact sampler, programs, data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import amortize as am
from amortize.prepare import prepare_data
from amortize.models import ddm
from tests.conftest import SHARED_DATA

WAGENMAKERS = SHARED_DATA / "wagenmakers2008_speed_acc"

_log_density = jax.jit(ddm.log_density)


def density64(s, *args):
    """The DDM density at one response time, in float64 (for quadrature)."""
    with jax.enable_x64(True):
        return float(np.exp(_log_density(s, *args)))


def reference_density_lower(t, v, a, w, eps=1e-14):
    """Navarro & Fuss (2009) in float64 with their adaptive choice of series and terms."""
    u = t / a**2
    kl = 1 / (math.pi * math.sqrt(u))
    if math.pi * u * eps < 1:
        kl = max(kl, math.sqrt(-2 * math.log(math.pi * u * eps) / (math.pi**2 * u)))
    ks = 2.0
    if 2 * math.sqrt(2 * math.pi * u) * eps < 1:
        ks = max(math.sqrt(u) + 1, 2 + math.sqrt(-2 * u * math.log(2 * math.sqrt(2 * math.pi * u) * eps)))
    if ks < kl:
        k = np.arange(-math.ceil(ks), math.ceil(ks) + 1)
        standard = np.sum((w + 2 * k) * np.exp(-((w + 2 * k) ** 2) / (2 * u))) / math.sqrt(2 * math.pi * u**3)
    else:
        k = np.arange(1, math.ceil(kl) + 1)
        standard = math.pi * np.sum(k * np.exp(-(k**2) * math.pi**2 * u / 2) * np.sin(k * math.pi * w))
    return standard * math.exp(-v * a * w - v**2 * t / 2) / a**2


def random_parameters(n, seed=0):
    rng = np.random.default_rng(seed)
    return (np.exp(rng.uniform(np.log(0.005), np.log(5.0), n)), rng.uniform(-4, 4, n),
            rng.uniform(0.5, 3.0, n), rng.uniform(0.1, 0.9, n))


def test_density_matches_navarro_fuss_to_1e_6():
    t, v, a, w = random_parameters(500)
    reference = np.array([reference_density_lower(*x) for x in zip(t, v, a, w)])
    # Upper boundary: the lower one of the mirrored process (v → -v, w → 1 - w).
    reference_upper = np.array([reference_density_lower(ti, -vi, ai, 1 - wi) for ti, vi, ai, wi in zip(t, v, a, w)])
    tau = 0.2
    with jax.enable_x64(True):
        lower = np.exp(np.asarray(ddm.log_density(t + tau, 0, v, a, tau, w)))
        upper = np.exp(np.asarray(ddm.log_density(t + tau, 1, v, a, tau, w)))
    # The fixed series' truncation errors are below exp(-49) (module docstring); 1e-6 is the issue's bar.
    assert np.max(np.abs(lower - reference)) < 1e-9
    assert np.max(np.abs(upper - reference_upper)) < 1e-9
    # In float32 the error is rounding: relative, a few units of 1e-7.
    lower32 = np.exp(np.asarray(ddm.log_density(*(np.float32(x) for x in (t + tau, 0, v, a, tau, w)))))
    big = reference > 1e-3
    assert np.max(np.abs(lower32 - reference)[big] / reference[big]) < 2e-5


@pytest.mark.parametrize("drift, boundary, bias, ndt", [(1.0, 1.5, 0.5, 0.3), (-2.0, 1.0, 0.3, 0.2),
                                                        (0.0, 2.0, 0.6, 0.1), (3.0, 0.8, 0.55, 0.0)])
def test_density_integrates_to_the_closed_form_choice_probabilities(drift, boundary, bias, ndt):
    # P(upper) = (1 - exp(-2 v a w)) / (1 - exp(-2 v a)), and 1 - w without drift.
    if drift == 0:
        exact_upper = bias
    else:
        exact_upper = -math.expm1(-2 * drift * boundary * bias) / -math.expm1(-2 * drift * boundary)
    mass = [integrate.quad(density64, ndt, np.inf, args=(d, drift, boundary, ndt, bias), limit=400,
                           epsabs=1e-12)[0] for d in (0, 1)]
    with jax.enable_x64(True):
        assert abs(float(ddm.choice_probability(drift, boundary, bias)) - exact_upper) < 1e-12
    assert abs(mass[1] - exact_upper) < 1e-8
    assert abs(mass[0] - (1 - exact_upper)) < 1e-8


def test_distribution_function_is_the_integral_of_the_density():
    with jax.enable_x64(True):
        for drift, boundary, bias, ndt in [(1.0, 1.5, 0.5, 0.3), (-0.5, 1.2, 0.8, 0.0), (2.5, 0.7, 0.4, 0.25)]:
            for decision in (0, 1):
                # Both series: standardized times below and above the switch at 1/2.
                for u in (0.01, 0.1, 0.3, 0.49, 0.51, 1.0, 2.5):
                    rt = ndt + u * boundary**2
                    quad = integrate.quad(density64, ndt, rt, args=(decision, drift, boundary, ndt, bias),
                                          limit=200, epsabs=1e-13)[0]
                    cdf = float(ddm.distribution_function(rt, decision, drift, boundary, ndt, bias))
                    assert abs(cdf - quad) < 1e-10, (drift, boundary, bias, decision, u)


def test_exact_sampler_matches_choice_probability_and_distribution_function():
    n = 100_000
    drift, boundary, ndt, bias = 1.0, 1.5, 0.3, 0.45
    draws = np.asarray(ddm.DDM(drift, boundary, ndt, bias).sample(jax.random.key(3), (n,)), np.float64)
    assert draws.shape == (n, 2)
    p_upper = float(ddm.choice_probability(drift, boundary, bias))
    assert abs(draws[:, 1].mean() - p_upper) < 4 * math.sqrt(p_upper * (1 - p_upper) / n)
    assert np.all(draws[:, 0] > ndt)
    for decision, p in ((1, p_upper), (0, 1 - p_upper)):
        times = draws[draws[:, 1] == decision, 0]
        with jax.enable_x64(True):
            cdf = lambda x: np.asarray(ddm.distribution_function(x, decision, drift, boundary, ndt, bias)) / p  # noqa: E731
            # Kolmogorov–Smirnov against the exact conditional distribution function, at the 1% level.
            assert stats.kstest(times, cdf).pvalue > 0.01


def test_samples_are_vectorized_over_parameter_arrays():
    # Trials × subjects × data sets in one call, each with its own parameters.
    drift = jnp.linspace(-2, 2, 5)[:, None] * jnp.ones((5, 40))
    dist = ddm.DDM(drift, 1.2, 0.25, 0.5)
    draws = np.asarray(dist.sample(jax.random.key(0), (300,)))
    assert draws.shape == (300, 5, 40, 2)
    upper_rate = draws[..., 1].mean(axis=(0, 2))
    expected = np.asarray(ddm.choice_probability(jnp.linspace(-2, 2, 5), 1.2, 0.5))
    assert np.all(np.abs(upper_rate - expected) < 4 * np.sqrt(expected * (1 - expected) / 12_000))


def test_log_prob_gradients_are_finite_with_padded_zeros():
    # Padded trials hold zeros (rt <= ndt); masked out, they must not poison NUTS's gradients.
    value = jnp.array([[0.7, 1.0], [0.45, 0.0], [0.0, 0.0]])
    mask = jnp.array([True, True, False])

    def masked_log_density(params):
        lp = ddm.DDM(*params).log_prob(value)
        return jnp.sum(jnp.where(mask, lp, 0.0))

    params = (jnp.array(0.8), jnp.array(1.1), jnp.array(0.3), jnp.array(0.5))
    value_and_grad = jax.value_and_grad(masked_log_density)(params)
    assert np.isfinite(float(value_and_grad[0]))
    assert all(np.isfinite(float(g)) for g in value_and_grad[1])
    assert float(ddm.DDM(*params, validate_args=False).log_prob(jnp.array([0.2, 1.0]))) == -np.inf


def test_log_prob_validation_names_the_problem():
    dist = ddm.DDM(0.5, 1.0, 0.3, 0.5, validate_args=True)
    with pytest.raises(ValueError, match="decisions must be 0 .* or 1"):
        dist.log_prob(jnp.array([[0.6, 2.0], [0.7, 1.0]]))
    with pytest.raises(ValueError, match="exceed the non-decision time"):
        dist.log_prob(jnp.array([[0.25, 1.0], [0.7, 1.0]]))
    assert np.isfinite(float(dist.log_prob(jnp.array([0.6, 1.0]))))


def test_sample_data_rejects_responses_outside_the_support():
    amortizer = am.compile(ddm.model_a, data=["y"], sizes={"subject": (2, 4), "trial": (5, 10)})
    rng = np.random.default_rng(0)
    good = [np.column_stack([rng.uniform(0.4, 1.0, 6), rng.integers(0, 2, 6)]) for _ in range(3)]
    prepare_data(amortizer.graph, {"y": good})
    codes = [g.copy() for g in good]
    codes[1][2, 1] = 2.0
    with pytest.raises(am.DataError, match=r"`y` has 1 value\(s\) outside the support.*instance \(1, 2\)"):
        prepare_data(amortizer.graph, {"y": codes})
    times = [g.copy() for g in good]
    times[0][0, 0] = -0.1
    with pytest.raises(am.DataError, match="response time > 0"):
        prepare_data(amortizer.graph, {"y": times})


def test_programs_factorize_with_shared_or_subject_level_bias():
    a = am.compile(ddm.model_a, data=["y"], sizes=ddm.SIZES)
    b = am.compile(ddm.model_b, data=["y"], sizes=ddm.SIZES)
    hyper = "mu_drift, sigma_drift, mu_boundary, sigma_boundary, mu_ndt, sigma_ndt"
    assert str(a.factorization) == (f"p({hyper}, bias | y) · Π_subject p(drift, boundary, ndt | {hyper}, bias, "
                                    f"y[subject])")
    assert str(b.factorization) == (f"p({hyper}, mu_bias, kappa_bias | y) · Π_subject p(drift, boundary, ndt, "
                                    f"bias | {hyper}, mu_bias, kappa_bias, y[subject])")


def test_short_training_gives_subject_level_posteriors_for_ragged_data():
    sizes = {"subject": (3, 6), "trial": (10, 30)}
    network = am.NetworkConfig(extremes=True, summary_width=32, embed_dim=16, pooled_dim=16,
                               flow="affine", flow_hidden=32, flow_layers=2)
    amortizer = am.compile(ddm.model_a, data=["y"], sizes=sizes, network=network)
    amortizer.fit(steps=40, batch_size=32, seed=0, progress=False)
    rng = np.random.default_rng(1)
    subjects = [np.column_stack([0.35 + rng.gamma(2.0, 0.15, n), rng.integers(0, 2, n)]) for n in (12, 30, 20, 25)]
    tree = amortizer.sample({"y": subjects}, num_samples=200, seed=0)
    posterior = tree["posterior"]
    assert dict(posterior["ndt"].sizes) == {"chain": 4, "draw": 50, "subject": 4}
    assert dict(posterior["bias"].sizes) == {"chain": 4, "draw": 50}
    assert np.all(posterior["boundary"].values > 0) and np.all(posterior["ndt"].values > 0)
    assert np.all((posterior["bias"].values > 0) & (posterior["bias"].values < 1))


@pytest.mark.skipif(not WAGENMAKERS.exists(), reason=f"shared data folder {WAGENMAKERS} is absent")
def test_loader_reads_block_4_of_the_accuracy_condition():
    data, subjects = ddm.load(WAGENMAKERS)
    assert subjects == list(range(1, 18))
    counts = [len(y) for y in data["y"]]
    assert min(counts) >= 94 and max(counts) == 96  # 96 trials per block, censored ones left out
    everything = np.concatenate(data["y"])
    assert set(np.unique(everything[:, 1])) == {0.0, 1.0}
    assert everything[:, 0].min() >= 0.18 and everything[:, 0].max() <= 3.0
    # Within the training range of ddm.SIZES.
    low, high = ddm.SIZES["trial"]
    assert low <= min(counts) and max(counts) <= high
    assert ddm.SIZES["subject"][0] <= len(subjects) <= ddm.SIZES["subject"][1]
    with pytest.raises(ValueError, match="block 4 is an accuracy block"):
        ddm.load(WAGENMAKERS, condition="speed", block=4)


def test_nuts_runs_the_same_program_from_a_valid_start():
    # Simulated subjects whose fastest responses lie below the prior median non-decision time (e^-1 s).
    trials = jnp.ones((1, 25))
    draws = ddm.DDM(jnp.array([[0.3], [-0.2], [0.5]]) * trials, 1.0, jnp.array([[0.2], [0.25], [0.3]]) * trials,
                    0.5).sample(jax.random.key(4))
    subjects = [np.asarray(draws)[j, :n] for j, n in enumerate((15, 25, 20))]
    data = {"y": subjects}
    tree = am.reference.nuts(ddm.model_a, data, num_warmup=150, num_samples=100, num_chains=1,
                             init_strategy=ddm.nuts_init(data))
    ndt = tree["posterior"]["ndt"].values.reshape(-1, 3)
    fastest = np.array([s[:, 0].min() for s in subjects])
    # Every draw keeps the data's density positive: ndt below each subject's fastest response.
    assert np.all(ndt < fastest)
    assert dict(tree["posterior"]["drift"].sizes) == {"chain": 1, "draw": 100, "subject": 3}
