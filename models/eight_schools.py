"""Eight schools (Rubin 1981; Gelman et al., Bayesian Data Analysis, §5.5).

    mu ~ Normal(0, 5),  tau ~ HalfCauchy(5)
    theta_j ~ Normal(mu, tau)
    y_j ~ Normal(theta_j, sigma_j)     with sigma_j the known standard error

The standard errors are observed covariates: during training the program
draws them from a design distribution, ``sigma_j ~ Uniform(5, 20)``, which
covers the published values (9 to 18); at inference they are passed as data
like ``y``. The posterior then conditions on them.
"""

import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["model", "Y", "SIGMA", "SCHOOLS", "SIZES", "data", "reference_posterior"]

#: Estimated treatment effects (Rubin 1981).
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
#: Their standard errors.
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SCHOOLS = np.array(["A", "B", "C", "D", "E", "F", "G", "H"])
#: Training range of the number of schools.
SIZES = {"school": (4, 16)}


def model(n_school, y=None, sigma=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", n_school):
        sigma = numpyro.sample("sigma", dist.Uniform(5.0, 20.0), obs=sigma)
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def data():
    """The published data as amortize expects it: ``{"y": (8,), "sigma": (8,)}``."""
    return {"y": Y, "sigma": SIGMA}


def reference_posterior(folder):
    """posteriordb's reference draws (10 chains × 1000) as a DataTree in amortize's layout.

    Parameters
    ----------
    folder : str or Path
        The shared ``eight_schools`` folder holding
        ``eight_schools_noncentered_reference_draws.csv`` (columns ``chain``,
        ``draw``, ``mu``, ``tau``, ``theta[1]`` … ``theta[8]``). The reference
        was sampled from the non-centered parametrization of this same model
        (same priors), so its posterior of mu, tau and theta is this model's.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (chain, draw, school) and ``observed_data``, like
        :meth:`amortize.Amortizer.sample` returns.
    """
    from pathlib import Path

    from amortize.convert import to_datatree
    from amortize.prepare import prepare_data
    from amortize.graph import graph_for

    path = Path(folder) / "eight_schools_noncentered_reference_draws.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; point to the shared eight_schools folder.")
    table = np.genfromtxt(path, delimiter=",", names=True)
    chains = np.unique(table["chain"])
    order = np.lexsort((table["draw"], table["chain"]))
    table = table[order]
    draws = {"mu": table["mu"], "tau": table["tau"],
             "theta": np.stack([table[f"theta{j}"] for j in range(1, 9)], axis=1)}
    graph = graph_for(model, ["y", "sigma"])
    prepared = prepare_data(graph, data(), coords={"school": SCHOOLS})
    tree = to_datatree(draws, prepared, graph, num_chains=len(chains))
    tree["posterior"].attrs.update(reference="posteriordb eight_schools-eight_schools_noncentered",
                                   converged=1, max_rhat=1.0, divergences=0)
    return tree
