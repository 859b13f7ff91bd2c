"""NumPyro programs as their authors wrote them, compiled from one call with data (issue 18).

Each program below follows the structure of an example from NumPyro's own
documentation (named in its docstring), written here, and is compiled with
arguments to ``compile`` only: its body is never changed.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.infer.reparam import TransformReparam

import amortize as am
from tests.conftest import SHARED_DATA

SMALL = am.NetworkConfig(summary_width=32, flow_hidden=32, flow_layers=2)
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
RNG = np.random.default_rng(0)
AT_BATS = RNG.integers(10, 50, 18)
HITS = RNG.binomial(AT_BATS, 0.3)


def eight_schools(J, sigma, y=None):
    """NumPyro's README: the number of schools, the standard errors and the effects as arguments."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J, sigma, y=None):
    """NumPyro's README, non-centred by a ``reparam`` handler: ``theta`` becomes a deterministic site."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        with numpyro.handlers.reparam(config={"theta": TransformReparam()}):
            theta = numpyro.sample("theta", dist.TransformedDistribution(
                dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(mu, tau)))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def fully_pooled(at_bats, hits=None):
    """NumPyro's baseball example: the plate's size is ``at_bats.shape[0]``, a covariate."""
    phi = numpyro.sample("phi", dist.Uniform(0, 1))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled(at_bats, hits=None):
    """NumPyro's baseball example, with a chance of success per player drawn from a population Beta."""
    m = numpyro.sample("m", dist.Uniform(0, 1))
    kappa = numpyro.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi = numpyro.sample("phi", dist.Beta(m * kappa, (1 - m) * kappa))
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def zero_inflated_regression(x, y=None):
    """NumPyro's zero-inflated Poisson example's structure: rows of a covariate, the plate sized by ``len(x)``."""
    a = numpyro.sample("a", dist.Normal(0, 1))
    b = numpyro.sample("b", dist.Normal(0, 1))
    gate = numpyro.sample("gate", dist.Beta(1, 1))
    with numpyro.plate("N", len(x)):
        numpyro.sample("obs", dist.ZeroInflatedPoisson(gate, jnp.exp(a + b * x)), obs=y)


def normal_of_data(data):
    """The Gaussian mixture notebook's data handling: one positional argument, observed, sizing its plate."""
    loc = numpyro.sample("loc", dist.Normal(0, 10))
    scale = numpyro.sample("scale", dist.LogNormal(0, 2))
    with numpyro.plate("data", len(data)):
        numpyro.sample("obs", dist.Normal(loc, scale), obs=data)


X = RNG.normal(size=40)
CASES = {
    "eight_schools": (eight_schools, (8, SIGMA), {"y": Y}, {"J": (4, 16)},
                      {"J": "size", "sigma": "covariate", "y": "data"},
                      "p(mu, tau | obs, sigma) · Π_J p(theta | mu, tau, obs[J], sigma[J])"),
    "noncentered": (eight_schools_noncentered, (8, SIGMA), {"y": Y}, {"J": (4, 16)},
                    {"J": "size", "sigma": "covariate", "y": "data"},
                    "p(mu, tau | obs, sigma) · Π_J p(theta_base | mu, tau, obs[J], sigma[J])"),
    "fully_pooled": (fully_pooled, (AT_BATS,), {"hits": HITS}, {"num_players": (5, 30)},
                     {"at_bats": "covariate", "hits": "data"}, "p(phi | obs, at_bats)"),
    "partially_pooled": (partially_pooled, (AT_BATS,), {"hits": HITS}, {"num_players": (5, 30)},
                         {"at_bats": "covariate", "hits": "data"},
                         "p(m, kappa | obs, at_bats) · Π_num_players p(phi | m, kappa, obs[num_players], "
                         "at_bats[num_players])"),
    "zero_inflated": (zero_inflated_regression, (X,), {"y": RNG.poisson(2, 40)}, {"N": (20, 60)},
                      {"x": "covariate", "y": "data"}, "p(a, b, gate | obs, x)"),
    "positional_data": (normal_of_data, (RNG.normal(size=30),), {}, {"data": (10, 50)},
                        {"data": "data"}, "p(loc, scale | obs)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_roles_are_read_from_one_call_and_the_program_compiles_unchanged(case):
    model, args, kwargs, sizes, roles, factorization = CASES[case]
    amortizer = am.compile(model, args=args, kwargs=kwargs, sizes=sizes)
    assert {n: r.kind for n, r in amortizer.graph.model.roles.items()} == roles
    assert str(amortizer.factorization) == factorization
    # Every simulated data set has the plate sizes asked for, and the data the call's shapes.
    plate = next(iter(sizes))
    truth, data = amortizer.simulate({plate: 7}, seed=1)
    assert all(np.shape(v)[0] == 7 for v in data.values())
    call_data = amortizer.data_of(*args, **kwargs)
    assert set(call_data) == set(amortizer.graph.data_names)


def test_covariates_are_drawn_from_the_calls_rows_or_the_given_design():
    resampled = am.compile(fully_pooled, args=(AT_BATS,), kwargs={"hits": HITS}, sizes={"num_players": (5, 30)})
    _, data = resampled.simulate({"num_players": 30}, seed=0)
    assert set(data["at_bats"].tolist()) <= set(AT_BATS.tolist())
    assert np.all(data["obs"] <= data["at_bats"])   # hits never exceed at-bats: the covariate reached the program
    designed = am.compile(eight_schools, args=(8, SIGMA), kwargs={"y": Y}, sizes={"J": (4, 16)},
                          covariates={"sigma": dist.Uniform(30.0, 40.0)})
    _, data = designed.simulate({"J": 16}, seed=0)
    assert np.all((data["sigma"] >= 30.0) & (data["sigma"] <= 40.0))


@pytest.fixture(scope="module")
def noncentered():
    amortizer = am.compile(eight_schools_noncentered, args=(8, SIGMA), kwargs={"y": Y}, sizes={"J": (4, 16)},
                           network=SMALL)
    amortizer.fit(steps=800, batch_size=64, seed=0, progress=False)
    return amortizer


def test_an_unchanged_noncentered_program_matches_nuts_on_the_same_program(noncentered):
    """Short training + refine='psis' against NUTS on the very same (adapted) program; theta, a
    deterministic site of the reparam handler, comes back in both posteriors."""
    data = noncentered.data_of(8, SIGMA, y=Y)
    tree = noncentered.sample(data, num_samples=4000, seed=0, refine="psis")
    reference = am.reference.nuts(noncentered, data, num_warmup=500, num_samples=1000, seed=0)
    post, ref = tree["posterior"], reference["posterior"]
    np.testing.assert_allclose(post["theta"].values,
                               post["mu"].values[..., None] + post["tau"].values[..., None] * post["theta_base"].values,
                               rtol=1e-5, atol=1e-4)
    assert_matches_nuts(post, ref, ("mu", "tau", "theta_base", "theta"))


def assert_matches_nuts(post, ref, names):
    """Psis-refined draws against NUTS: means within 4 Monte Carlo standard errors of the difference,
    sds within 4 standard errors of a sample sd (sd * sqrt((kurtosis - 1) / (4 n)))."""
    n = post["chain"].size * post["draw"].size
    m = ref["chain"].size * ref["draw"].size
    ess_psis = post.attrs["certificate_relative_ess"] * n
    ess_nuts = m / 4  # at least a quarter of NUTS's draws effective for these small, well-posed posteriors
    for name in names:
        a = post[name].values.reshape(n, -1)
        b = ref[name].values.reshape(m, -1)
        sd = b.std(axis=0)
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) <= 4 * sd * np.sqrt(1 / ess_psis + 1 / ess_nuts)), name
        kurtosis = np.mean((b - b.mean(axis=0)) ** 4, axis=0) / sd ** 4
        bound = 4 * np.sqrt((kurtosis - 1) / 4 * (1 / ess_psis + 1 / ess_nuts))
        assert np.all(np.abs(a.std(axis=0) / sd - 1) <= bound), name


def divorce_regression(marriage=None, age=None, divorce=None):
    """NumPyro's Bayesian regression tutorial: optional covariates, observations without a plate."""
    a = numpyro.sample("a", dist.Normal(0.0, 0.2))
    M, A = 0.0, 0.0
    if marriage is not None:
        bM = numpyro.sample("bM", dist.Normal(0.0, 0.5))
        M = bM * marriage
    if age is not None:
        bA = numpyro.sample("bA", dist.Normal(0.0, 0.5))
        A = bA * age
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    numpyro.sample("obs", dist.Normal(a + M + A, sigma), obs=divorce)


def test_a_regression_without_plates_compiles_on_its_fixed_design_and_matches_nuts():
    """No plate: the 50 observations are one event of fixed size (item 4) and the covariates a fixed
    design passed as in the call; both optional covariates are in the program compiled."""
    marriage, age = RNG.normal(size=50), RNG.normal(size=50)
    divorce = 0.3 * marriage - 0.5 * age + 0.8 * RNG.normal(size=50)
    amortizer = am.compile(divorce_regression, kwargs=dict(marriage=marriage, age=age, divorce=divorce),
                           sizes={}, network=SMALL)
    assert {n: r.kind for n, r in amortizer.graph.model.roles.items()} == {
        "marriage": "fixed", "age": "fixed", "divorce": "data"}
    assert amortizer.graph.sites["obs"].event_shape == (50,)
    assert str(amortizer.factorization) == "p(a, bM, bA, sigma | obs)"
    amortizer.fit(steps=600, batch_size=64, seed=0, progress=False)
    data = amortizer.data_of(marriage=marriage, age=age, divorce=divorce)
    tree = amortizer.sample(data, num_samples=2000, seed=0, refine="psis")
    reference = am.reference.nuts(amortizer, data, num_warmup=500, num_samples=500, seed=0)
    assert_matches_nuts(tree["posterior"], reference["posterior"], ("a", "bM", "bA", "sigma"))


def gaussian_mixture(data):
    """NumPyro's Gaussian mixture notebook: a fixed-size ``components`` plate over the locations."""
    weights = numpyro.sample("weights", dist.Dirichlet(0.5 * jnp.ones(2)))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", len(data)):
        assignment = numpyro.sample("assignment", dist.Categorical(weights))
        numpyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def test_a_mixture_with_a_fixed_components_plate_compiles_unchanged():
    amortizer = am.compile(gaussian_mixture, args=(RNG.normal(size=60),), sizes={"data": (30, 100)})
    assert str(amortizer.factorization) == (
        "p(weights, scale, locs | obs) · Π_data p(assignment | weights, scale, locs, obs[data])")
    assert amortizer.graph.sites["locs"].event_shape == (2,)
    truth, data = amortizer.simulate({"data": 40}, seed=0)
    assert truth["locs"].shape == (2,) and data["obs"].shape == (40,)
    assert set(np.unique(truth["assignment"])) <= {0, 1}


def test_an_adapted_amortizer_saves_and_loads_with_its_roles(noncentered, tmp_path):
    path = tmp_path / "eight.amortizer"
    noncentered.save(path)
    data = noncentered.data_of(8, SIGMA, y=Y)
    before = noncentered.sample(data, num_samples=200, seed=3, certify=False)["posterior"]
    for loaded in (am.load(path), am.load(path, model=eight_schools_noncentered)):
        after = loaded.sample(loaded.data_of(8, SIGMA, y=Y), num_samples=200, seed=3, certify=False)["posterior"]
        np.testing.assert_allclose(after["theta"].values, before["theta"].values, rtol=1e-5)


def test_deterministic_sites_outside_the_plate_layout_are_left_out():
    def model(x, y=None):
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.deterministic("twice_a", 2 * a)
        rows = numpyro.deterministic("rows", a * x)   # long-format rows outside any plate: left out
        with numpyro.plate("N", len(x)):
            numpyro.deterministic("mean", rows)
            numpyro.sample("obs", dist.Normal(rows, 1.0), obs=y)

    graph = am.compile(model, args=(X,), kwargs={"y": X}, sizes={"N": (10, 50)}).graph
    assert set(graph.deterministics) == {"twice_a", "mean"}
    assert graph.deterministics["mean"].path == ("N",)


def test_unclear_calls_are_refused_with_the_argument_and_the_fix(noncentered):
    with pytest.raises(am.ModelError, match="cannot be called"):
        am.compile(eight_schools, args=(8, SIGMA, Y, 1), sizes={"J": (4, 16)})
    with pytest.raises(am.ModelError, match="No argument of the call is observed"):
        am.compile(eight_schools, args=(8, SIGMA), sizes={"J": (4, 16)})
    with pytest.raises(am.ModelError, match="data names `theta`"):
        am.compile(eight_schools, args=(8, SIGMA), kwargs={"y": Y}, data=["theta"], sizes={"J": (4, 16)})
    with pytest.raises(am.ModelError, match="covariates names `tau`"):
        am.compile(eight_schools, args=(8, SIGMA), kwargs={"y": Y}, sizes={"J": (4, 16)},
                   covariates={"tau": dist.Uniform(1, 2)})
    with pytest.raises(am.ModelError, match="give a NumPyro distribution"):
        am.compile(eight_schools, args=(8, SIGMA), kwargs={"y": Y}, sizes={"J": (4, 16)},
                   covariates={"sigma": (5, 20)})
    with pytest.raises(am.ModelError, match="pass the call too"):
        am.compile(eight_schools, data=["obs"], sizes={"J": (4, 16)}, covariates={"sigma": dist.Uniform(5, 20)})
    with pytest.raises(am.ModelError, match="no default, so amortize cannot tell what it is"):
        am.compile(eight_schools, data=["obs"], sizes={"J": (4, 16)})

    def wide(x, y=None):   # a covariate whose plate runs along its second axis
        b = numpyro.sample("b", dist.Normal(0, 1))
        with numpyro.plate("N", x.shape[1]):
            numpyro.sample("obs", dist.Normal(b * x[0], 1.0), obs=y)

    with pytest.raises(am.ModelError, match="Argument `x` is neither observed nor a plate size.*axis 1"):
        am.compile(wide, args=(RNG.normal(size=(2, 20)),), kwargs={"y": RNG.normal(size=20)}, sizes={"N": (5, 30)})
    conventional = am.compile(lambda n_J, obs=None: eight_schools(n_J, 10.0, obs), data=["obs"], sizes={"J": (4, 16)})
    with pytest.raises(am.DataError, match="data_of reads a call"):
        conventional.data_of(8, SIGMA, y=Y)
    with pytest.raises(am.ModelError, match="do not fit the program"):
        noncentered.data_of(8, SIGMA, Y, 4)


def radon_long(county_idx, floor, y=None):
    """NumPyro's radon tutorial: one row per house, the county's intercept picked by ``a[county_idx]``."""
    mu_a = numpyro.sample("mu_a", dist.Normal(0, 2))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1))
    b = numpyro.sample("b", dist.Normal(0, 1))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1))
    with numpyro.plate("county", len(np.unique(county_idx))):
        a = numpyro.sample("a", dist.Normal(mu_a, sigma_a))
    with numpyro.plate("house", len(county_idx)):
        numpyro.sample("obs", dist.Normal(a[county_idx] + b * floor, sigma_y), obs=y)


def lung_function(patient_code, Weeks, FVC_obs=None):
    """NumPyro's hierarchical linear regression tutorial: two parameters per patient, gathered per row."""
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 500.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(100.0))
    mu_beta = numpyro.sample("mu_beta", dist.Normal(0.0, 3.0))
    sigma_beta = numpyro.sample("sigma_beta", dist.HalfNormal(3.0))
    with numpyro.plate("plate_i", len(np.unique(patient_code))):
        alpha = numpyro.sample("alpha", dist.Normal(mu_alpha, sigma_alpha))
        beta = numpyro.sample("beta", dist.Normal(mu_beta, sigma_beta))
    sigma = numpyro.sample("sigma", dist.HalfNormal(100.0))
    with numpyro.plate("data", len(patient_code)):
        numpyro.sample("obs", dist.Normal(alpha[patient_code] + beta[patient_code] * Weeks, sigma), obs=FVC_obs)


def ucbadmit(dept, male, applications, admit=None):
    """NumPyro's UCBadmit GLMM: correlated department effects (LKJ), rows indexed by department."""
    v_mu = numpyro.sample("v_mu", dist.Normal(0, jnp.array([4.0, 1.0])).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.ones(2)).to_event(1))
    L_Rho = numpyro.sample("L_Rho", dist.LKJCholesky(2, concentration=2))
    with numpyro.plate("dept", len(np.unique(dept))):
        v = numpyro.sample("v", dist.MultivariateNormal(v_mu, scale_tril=sigma[..., None] * L_Rho))
    with numpyro.plate("obs", dept.shape[0]):
        numpyro.sample("admit", dist.Binomial(applications, logits=v[dept, 0] + v[dept, 1] * male), obs=admit)


COUNTY = np.repeat(np.arange(12), RNG.integers(2, 9, 12))
FLOOR = RNG.integers(0, 2, len(COUNTY))
RADON = RNG.normal(1.0, 0.5, 12)[COUNTY] - 0.6 * FLOOR + 0.4 * RNG.normal(size=len(COUNTY))


def test_rows_indexed_by_group_are_read_as_nested_plates_and_match_nuts():
    """Index-based grouping (item 3): ``a[county_idx]`` over a plate of rows factorizes as nested plates
    (each county's factor sees its own houses); 800 steps + psis agree with NUTS on the same program."""
    amortizer = am.compile(radon_long, args=(COUNTY, FLOOR), kwargs={"y": RADON},
                           sizes={"county": (5, 20), "house": (1, 10)}, network=SMALL)
    roles = {n: r.kind for n, r in amortizer.graph.model.roles.items()}
    assert roles == {"county_idx": "index", "floor": "covariate", "y": "data"}
    assert str(amortizer.factorization) == ("p(mu_a, sigma_a, b, sigma_y | obs, floor) · Π_county "
                                            "p(a | mu_a, sigma_a, b, sigma_y, obs[county], floor[county])")
    assert amortizer.graph.sites["obs"].path == ("county", "house")
    data = amortizer.data_of(COUNTY, FLOOR, y=RADON)
    assert [len(rows) for rows in data["obs"]] == np.bincount(COUNTY).tolist()   # one array per county
    np.testing.assert_array_equal(np.concatenate(data["obs"]), RADON)
    amortizer.fit(steps=800, batch_size=64, seed=0, progress=False)
    tree = amortizer.sample(data, num_samples=2000, seed=0, refine="psis")
    reference = am.reference.nuts(amortizer, data, num_warmup=500, num_samples=500, seed=0)
    assert_matches_nuts(tree["posterior"], reference["posterior"], ("mu_a", "sigma_a", "b", "sigma_y", "a"))


@pytest.mark.filterwarnings("ignore::amortize.CertificateWarning", "ignore::amortize.AmortizationGapWarning")
@pytest.mark.parametrize("case", ["lung_function", "ucbadmit", "sized_by_argument"])
def test_the_index_grouped_tutorial_models_compile_unchanged(case):
    def sized_by_argument(county_idx, n_counties, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("county", n_counties):
            a = numpyro.sample("a", dist.Normal(mu, 1))
        with numpyro.plate("data", len(county_idx)):
            numpyro.sample("obs", dist.Normal(a[county_idx], 1), obs=y)

    patients = np.repeat(np.arange(8), RNG.integers(3, 9, 8))
    dept = np.repeat(np.arange(6), 2)
    calls = {
        "lung_function": (lung_function, (patients, RNG.uniform(0, 50, len(patients))),
                          {"FVC_obs": RNG.normal(2500, 200, len(patients))}, {"plate_i": (4, 20), "data": (2, 10)},
                          "p(mu_alpha, sigma_alpha, mu_beta, sigma_beta, sigma | obs, Weeks) · Π_plate_i p(alpha, "
                          "beta | mu_alpha, sigma_alpha, mu_beta, sigma_beta, sigma, obs[plate_i], Weeks[plate_i])"),
        "ucbadmit": (ucbadmit, (dept, np.tile([1, 0], 6), RNG.integers(20, 800, 12)),
                     {"admit": RNG.integers(0, 20, 12)}, {"dept": (3, 10), "obs": (2, 2)},
                     "p(v_mu, sigma, L_Rho | admit, male, applications) · Π_dept p(v | v_mu, sigma, L_Rho, "
                     "admit[dept], male[dept], applications[dept])"),
        "sized_by_argument": (sized_by_argument, (COUNTY, 12), {"y": RADON}, {"county": (5, 20), "data": (1, 10)},
                              "p(mu | obs) · Π_county p(a | mu, obs[county])"),
    }
    model, args, kwargs, sizes, factorization = calls[case]
    amortizer = am.compile(model, args=args, kwargs=kwargs, sizes=sizes, network=SMALL)
    assert str(amortizer.factorization) == factorization
    rows = list(sizes)[1]
    truth, data = amortizer.simulate({list(sizes)[0]: 4, rows: 2}, seed=0)
    assert all(np.shape(v)[:2] == (4, 2) for v in data.values())
    if case != "ucbadmit":
        return
    # The most unusual of them (LKJ, multivariate group effects, integer covariates) samples the call's
    # data: the certificate evaluates the program, as written, on its long-format rows. (Fresh networks
    # with their standardization: training is what the other tests check; this one checks the data path.)
    amortizer.init(seed=0, pilot_size=256)
    tree = amortizer.sample(amortizer.data_of(*args, **kwargs), num_samples=40, seed=0)
    assert tree["posterior"].attrs["certificate_zero_density"] == 0.0
    assert all(np.all(np.isfinite(tree["posterior"][n].values)) for n in tree["posterior"].data_vars)


def test_group_indices_that_skip_a_group_are_refused():
    gaps = np.where(COUNTY >= 5, COUNTY + 1, COUNTY)           # county 5 has no row
    with pytest.raises(am.ModelError, match="not 0 .. 12 with every group present"):
        am.compile(radon_long, args=(gaps, FLOOR), kwargs={"y": RADON}, sizes={"county": (5, 20), "house": (1, 10)})


def ar2_scan(y):
    """NumPyro's AR(2) example: a scan whose carry holds the last two values, observed through
    ``handlers.condition`` with ``y[2:]``, its start values ``(y[1], y[0])`` read from the data."""
    alpha_1 = numpyro.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = numpyro.sample("alpha_2", dist.Normal(0, 1))
    const = numpyro.sample("const", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))

    def transition(carry, _):
        y_prev, y_prev_prev = carry
        y_t = numpyro.sample("y", dist.Normal(const + alpha_1 * y_prev + alpha_2 * y_prev_prev, sigma))
        return (y_t, y_prev), None

    with numpyro.handlers.condition(data={"y": y[2:]}):
        scan(transition, (y[1], y[0]), jnp.arange(y.shape[0] - 2))


def _ar2_series(n, rng):
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.3 + 0.5 * y[t - 1] - 0.3 * y[t - 2] + 0.5 * rng.normal()
    return y


def test_numpyros_ar2_scan_compiles_unchanged_with_its_start_values_as_a_covariate():
    """Item 7: the scan's sites are simulated (the program's condition on ``y[2:]`` is lifted inside the
    scan), the two start values become a covariate drawn from windows of the call's series, and the
    scan's length follows the series."""
    y = _ar2_series(60, np.random.default_rng(1))
    amortizer = am.compile(ar2_scan, args=(y,), sizes={"time": (20, 80)}, network=SMALL)
    role = amortizer.graph.model.roles["y"]
    assert (role.kind, role.site, role.start, role.plates, role.conditioned) == ("data", "y", 2, ((0, "time"),), True)
    assert str(amortizer.factorization) == "p(alpha_1, alpha_2, const, sigma | y, y_start)"
    assert amortizer.graph.plates["time"].ordered
    assert amortizer.network_config.ordered_window == 3   # an AR(2) step's likelihood spans 3 steps
    truth, data = amortizer.simulate({"time": 30}, seed=0)
    assert np.shape(data["y"]) == (30,) and np.shape(data["y_start"]) == (2,)
    # Simulated, not the placeholders, and started from a window of the call's own series.
    assert np.std(data["y"]) > 0 and any(np.allclose(data["y_start"], y[i:i + 2]) for i in range(59))
    call = amortizer.data_of(y)
    np.testing.assert_allclose(call["y"], y[2:], rtol=1e-6)   # read from the call (float32)
    np.testing.assert_array_equal(call["y_start"], y[:2])


@pytest.mark.skipif(not (SHARED_DATA / "old_faithful").is_dir(),
                    reason="shared Old Faithful data not present (../shared/data/old_faithful)")
@pytest.mark.filterwarnings("ignore::amortize.CertificateWarning")
def test_ar2_on_old_faithfuls_eruptions_refines_to_numpyros_own_nuts():
    """Real data: the first 100 eruption durations of Old Faithful (standardized), a series whose short
    and long eruptions alternate. After a short training, refine='auto' (NUTS from the amortized draws
    where the certificate fails) matches NumPyro's NUTS on the unchanged program and call."""
    from numpyro.infer import MCMC, NUTS

    table = np.genfromtxt(SHARED_DATA / "old_faithful" / "faithful.csv", delimiter=",", names=True,
                          dtype=None, encoding=None)
    y = table["eruptions"][:100]
    y = (y - y.mean()) / y.std()
    amortizer = am.compile(ar2_scan, args=(y,), sizes={"time": (40, 120)}, network=SMALL)
    amortizer.fit(steps=200, batch_size=64, seed=0, progress=False)
    tree = amortizer.sample(amortizer.data_of(y), num_samples=1000, seed=0, refine="auto")
    mcmc = MCMC(NUTS(ar2_scan), num_warmup=500, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(1), jnp.asarray(y))
    reference = mcmc.get_samples()
    post = tree["posterior"]
    assert float(np.mean(np.asarray(reference["alpha_1"]))) < -0.3   # the alternation NumPyro finds
    for name in ("alpha_1", "alpha_2", "const", "sigma"):
        a, b = post[name].values.ravel(), np.asarray(reference[name])
        # Both samplers' draws at least a quarter effective: 4 standard errors of the difference.
        se = b.std() * np.sqrt(4 / a.size + 4 / b.size)
        assert abs(a.mean() - b.mean()) <= 4 * se, name
        kurtosis = np.mean((b - b.mean()) ** 4) / b.std() ** 4
        assert abs(a.std() / b.std() - 1) <= 4 * np.sqrt((kurtosis - 1) / 4 * (4 / a.size + 4 / b.size)), name


def test_a_series_observed_as_the_scans_xs_is_simulated_inside_the_scan():
    """The other way scans observe (hmm_enum's, amortize's convention): ``obs=y_t`` with the series as the
    scan's xs. From a call, the placeholder series is released inside the scan's body, so the simulation
    is the program's AR(1), not the zeros it was given."""
    def ar1(y):
        rho = numpyro.sample("rho", dist.Uniform(-1, 1))

        def step(previous, y_t):
            return numpyro.sample("y", dist.Normal(rho * previous, 1.0), obs=y_t), None

        scan(step, 0.0, y)

    amortizer = am.compile(ar1, args=(RNG.normal(size=40),), sizes={"time": (10, 50)})
    role = amortizer.graph.model.roles["y"]
    assert (role.kind, role.start, role.plates, role.conditioned) == ("data", 0, ((0, "time"),), False)
    truth, data = amortizer.simulate({"time": 12}, seed=0)
    assert np.shape(data["y"]) == (12,) and np.all(data["y"] != 0)


def test_scan_programs_from_a_call_name_their_level_and_the_argument_that_sets_it():
    y = _ar2_series(30, RNG)
    with pytest.raises(am.ModelError, match=r"scan of 28 steps.*Name it in sizes=.*sizes=\{'time': \(10, 100\)\}"):
        am.compile(ar2_scan, args=(y,), sizes={})

    def fixed_length(y):  # the scan always takes 20 steps: nothing in the call sets them
        rho = numpyro.sample("rho", dist.Uniform(-1, 1))

        def step(previous, y_t):
            return numpyro.sample("y", dist.Normal(rho * previous, 1.0), obs=y_t), None

        scan(step, 0.0, y[:20])

    with pytest.raises(am.ModelError, match="scan takes 20 steps in this call, but no argument lengthens it"):
        am.compile(fixed_length, args=(RNG.normal(size=30),), sizes={"time": (10, 40)})


def test_a_covariate_series_along_a_scan_and_a_start_site_name_clash_are_refused():
    """A scan's covariate series (xs that are not observed) would need a covariate per step, which amortize
    does not draw; and the start values' covariate `<site>_start` must not take a site's name."""
    def regression(x, y):
        beta = numpyro.sample("beta", dist.Normal(0, 1))

        def step(previous, inputs):
            x_t, y_t = inputs
            return numpyro.sample("y", dist.Normal(0.5 * previous + beta * x_t, 1.0), obs=y_t), None

        scan(step, 0.0, (x, y))

    with pytest.raises(am.ModelError, match=r"Argument `x` is a covariate series along the program's scan "
                                            r"\(level `time`\).*obs=x_t"):
        am.compile(regression, args=(RNG.normal(size=30), RNG.normal(size=30)), sizes={"time": (10, 40)})

    def clashing(y):
        numpyro.sample("y_start", dist.Normal(0, 1))
        ar2_scan(y)

    with pytest.raises(am.ModelError, match=r"start values of series `y` \(argument `y`\) become the covariate "
                                            r"site `y_start`, but the program has a site of that name"):
        am.compile(clashing, args=(_ar2_series(30, RNG),), sizes={"time": (10, 40)})


def test_a_scan_and_rows_grouped_by_an_index_are_refused_together():
    def grouped_rows_and_a_series(group_idx, x, y):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("group", len(np.unique(group_idx))):
            a = numpyro.sample("a", dist.Normal(mu, 1))
        with numpyro.plate("rows", len(group_idx)):
            numpyro.sample("x", dist.Normal(a[group_idx], 1.0), obs=x)

        def step(previous, y_t):
            return numpyro.sample("y", dist.Normal(mu + 0.5 * previous, 1.0), obs=y_t), None

        scan(step, 0.0, y)

    index = np.repeat(np.arange(4), 3)
    with pytest.raises(am.ModelError, match="has a scan and rows grouped by an index.*Nest the rows"):
        am.compile(grouped_rows_and_a_series, args=(index, RNG.normal(size=12), RNG.normal(size=20)),
                   sizes={"group": (2, 6), "rows": (1, 4), "time": (10, 30)})


def test_a_plate_opened_inside_the_scans_step_is_refused_with_the_fix():
    """NumPyro's hmm_enum opens its plate of sequences inside each step; amortize's rule (the plate around
    the scan) is stated instead of a failure deep in the graph."""
    from numpyro.handlers import mask

    def hmm_enum_like(sequences, lengths):
        n_sequences, _, n_tones = sequences.shape
        probs_x = numpyro.sample("probs_x", dist.Dirichlet(0.9 * jnp.eye(2) + 0.1).to_event(1))
        probs_y = numpyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([2, n_tones]).to_event(2))

        def step(carry, y):
            x_prev, t = carry
            with numpyro.plate("sequences", n_sequences, dim=-2), mask(mask=(t < lengths)[..., None]):
                x = numpyro.sample("x", dist.Categorical(probs_x[x_prev]))
                with numpyro.plate("tones", n_tones, dim=-1):
                    numpyro.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
            return (x, t + 1), None

        scan(step, (jnp.zeros((n_sequences, 1), jnp.int32), 0), jnp.swapaxes(sequences, 0, 1))

    sequences = (RNG.uniform(size=(6, 20, 4)) < 0.3).astype(np.float32)
    with pytest.raises(am.ModelError, match=r"Plates `sequences`, `tones` are opened inside the scan's step.*"
                                            r"open the plate outside the scan"):
        am.compile(hmm_enum_like, args=(sequences, RNG.integers(10, 21, 6)),
                   sizes={"sequences": (2, 8), "time": (10, 30), "tones": (4, 4)})


@pytest.mark.skipif(not (SHARED_DATA / "radon").is_dir(), reason="shared radon data not present (../shared/data/radon)")
def test_the_radon_tutorial_program_on_minnesotas_rows_has_numpyros_own_likelihood():
    """Real data, no training: the radon tutorial's program, compiled unchanged from Minnesota's 919 rows,
    regrouped into 85 padded counties, scores the data exactly as NumPyro scores the long-format program."""
    from numpyro.infer.util import log_likelihood

    from amortize.padded_program import padded_from_prepared
    from amortize.prepare import prepare_data
    from amortize.models import radon
    from amortize.padded_program import pointwise_log_likelihood

    rows, index = radon.load(SHARED_DATA / "radon")
    _, county_idx = np.unique(index["county"], return_inverse=True)
    floor, log_radon = rows["floor"].astype(int), rows["log_radon"]
    amortizer = am.compile(radon_long, args=(county_idx, floor), kwargs={"y": log_radon},
                           sizes={"county": (40, 90), "house": (1, 120)})
    data = amortizer.data_of(county_idx, floor, y=log_radon)
    assert len(data["obs"]) == 85 and sum(len(r) for r in data["obs"]) == 919
    graph = amortizer.graph
    padded = padded_from_prepared(prepare_data(graph, data), graph)
    params = {"mu_a": np.array([1.3]), "sigma_a": np.array([0.3]), "b": np.array([-0.7]),
              "sigma_y": np.array([0.75]), "a": RNG.normal(1.3, 0.3, (1, 85))}
    padded = dataclasses.replace(padded, latents={n: params[n] for n in graph.latent_names})
    ours = pointwise_log_likelihood(graph, padded, jax.random.key(0))["obs"][0]
    theirs = log_likelihood(radon_long, params, county_idx, floor, y=log_radon)["obs"][0]
    mask = padded.masks["house"]
    assert np.isclose(float(np.sum(np.where(mask, ours, 0.0))), float(np.sum(theirs)), rtol=1e-5)
    # Row by row: each house's term sits at its county and rank.
    np.testing.assert_allclose(np.sort(np.asarray(ours)[mask]), np.sort(np.asarray(theirs)), rtol=1e-5, atol=1e-5)


def test_a_program_that_reads_its_data_beyond_obs_is_refused():
    """A prior centred at the data's mean uses the observed values outside `obs=`: simulating the data
    would train on another model than the one applied to the real data, silently. Refused."""
    def centred_on_data(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.mean(y), 1.0))
        with numpyro.plate("N", len(y)):
            numpyro.sample("obs", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(am.ModelError, match="`y` is observed at site `obs`, but the program also uses its values"):
        am.compile(centred_on_data, args=(RNG.normal(size=20),), sizes={"N": (10, 30)})
