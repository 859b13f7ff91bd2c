"""Shared fixtures: small programs and one trained amortizer per session."""

from pathlib import Path

import numpyro
import numpyro.distributions as dist
import pytest

import amortize as am
from amortize.models import conjugate_normal
from amortize.models.hierarchical_normal import model as two_level  # noqa: F401 (used by tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

#: Test files that take minutes of CPU, longest first (their tests' summed durations in a clean-clone CI run
#: with --durations=0 on 2026-12-04: test_amortizer.py 237 s ... networks/test_summary.py 62 s). pytest-xdist's
#: --dist loadfile hands whole files to the workers in collection order (with --no-loadscope-reorder, as
#: `make test` runs it; by default xdist reorders files by their number of tests, which ran the long
#: single-test files last); starting the longest ones first keeps a worker from running one alone at the end.
LONG_FILES = ("test_amortizer.py", "program/test_arguments.py", "test_train.py", "test_markov_indicators.py",
              "test_docs.py", "test_indicators.py", "test_design.py", "test_docs_validation.py",
              "test_docs_from_mcmc.py", "refine/test_refine.py", "models/test_air_traffic.py",
              "refine/test_consistency.py", "test_comparison.py", "models/test_ddm.py", "refine/test_chains.py",
              "networks/test_summary.py", "test_readme.py", "test_devices.py", "test_cli.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(LONG_FILES)))


def shared_amortizer(tmp_path_factory, name: str, model, train):
    """A session fixture's amortizer, trained once per test run rather than once per xdist worker.

    The first worker to ask trains it (``train()``) and saves it where every
    worker of the run can read it (the run's shared temporary folder); the
    others wait for it under a file lock and load it. Saving and loading
    round-trip exactly (tests/test_amortizer.py), so every test sees the same
    amortizer whichever worker it runs on.
    """
    import fcntl
    import os

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent   # the folder the workers' own temporary folders share
    path = root / f"{name}.amortizer"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return am.load(path, model=model)
        amortizer = train()
        amortizer.save(path)
        return amortizer


#: Training ranges of the conjugate model in the accuracy tests.
CONJUGATE_SIZES = {"group": (2, 6), "obs": (1, 6)}


def three_level(n_region, n_county, n_house, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))
    with numpyro.plate("region", n_region, dim=-3):
        alpha = numpyro.sample("alpha", dist.Normal(mu, 1))
        with numpyro.plate("county", n_county, dim=-2):
            beta = numpyro.sample("beta", dist.Normal(alpha, 0.5))
            with numpyro.plate("house", n_house, dim=-1):
                numpyro.sample("y", dist.Normal(beta, sigma), obs=y)


@pytest.fixture(scope="session")
def trained_conjugate(tmp_path_factory):
    """The conjugate two-level model, trained once per test run (about a minute on 2 cores)."""
    def train():
        amortizer = am.compile(conjugate_normal.model, data=["y"], sizes=CONJUGATE_SIZES)
        amortizer.fit(steps=6000, batch_size=64, seed=0, progress=False)
        return amortizer

    return shared_amortizer(tmp_path_factory, "trained_conjugate", conjugate_normal.model, train)


@pytest.fixture(scope="session")
def quick_two_level(tmp_path_factory):
    """The two-level model with unknown mu, tau, sigma after a short training (structure tests)."""
    def train():
        amortizer = am.compile(two_level, data=["y"], sizes={"group": (2, 12), "obs": (1, 8)},
                               network=am.NetworkConfig(summary_width=32, flow_hidden=32, flow_layers=2))
        amortizer.fit(steps=150, batch_size=32, seed=0, progress=False)
        return amortizer

    return shared_amortizer(tmp_path_factory, "quick_two_level", two_level, train)


def exact_conjugate_draws(groups, num_samples, seed=0):
    """Independent draws from the exact posterior of the conjugate model: mu, then theta | mu."""
    import numpy as np

    rng = np.random.default_rng(seed)
    exact = conjugate_normal.exact_posterior(groups)
    n = np.array([len(g) for g in groups], float)
    ybar = np.array([np.mean(g) for g in groups])
    tau, sigma = conjugate_normal.TAU, conjugate_normal.SIGMA
    local_var = 1.0 / (1.0 / tau**2 + n / sigma**2)
    mu = rng.normal(exact["mu_mean"], exact["mu_sd"], num_samples)
    theta = local_var * (mu[:, None] / tau**2 + n * ybar / sigma**2)
    theta = theta + rng.normal(size=theta.shape) * np.sqrt(local_var)
    return {"mu": mu, "theta": theta}


def exact_conjugate_tree(groups, num_samples=4000, seed=0, num_chains=4):
    """The exact conjugate posterior of ``groups`` as a DataTree in amortize's layout."""
    from amortize.convert import to_datatree
    from amortize.prepare import prepare_data
    from amortize.graph import graph_for

    graph = graph_for(conjugate_normal.model, ["y"])
    prepared = prepare_data(graph, {"y": groups})
    return to_datatree(exact_conjugate_draws(groups, num_samples, seed), prepared, graph, num_chains=num_chains)
