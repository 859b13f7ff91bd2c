"""Air traffic (Habermann et al. 2024, Experiment 1): a multilevel AR(1) panel with covariates.

For countries j and years t (eqs. 20–21 of the multilevel paper)::

    y_j1 ~ Normal(0.5, 1)
    y_j,t+1 ~ Normal(alpha_j + y_jt beta_j + u_jt gamma_j + w_jt delta_j, sigma_j)
    alpha_j ~ Normal(mu_alpha, sigma_alpha)        mu_alpha ~ Normal(0, 0.5),  sigma_alpha ~ HalfNormal(0.25)
    beta_j  ~ Normal(mu_beta, sigma_beta)          mu_beta  ~ Normal(0, 0.2),  sigma_beta  ~ HalfNormal(0.15)
    gamma_j ~ Normal(mu_gamma, sigma_gamma)        mu_gamma ~ Normal(0, 0.5),  sigma_gamma ~ HalfNormal(0.25)
    delta_j ~ Normal(mu_delta, sigma_delta)        mu_delta ~ Normal(0, 0.5),  sigma_delta ~ HalfNormal(0.25)
    log sigma_j ~ Normal(mu_sigma, sigma_sigma)    mu_sigma ~ Normal(-1, 0.5), sigma_sigma ~ HalfNormal(1)

The years form an *ordered* level: the program walks them with NumPyro's own
``numpyro.contrib.control_flow.scan`` over ``n_time`` steps, and amortize reads
that scan as the level ``time`` nested in ``country`` (its sites carry the steps
on their leading axis). The data arguments are therefore time-major,
``(n_time, n_country)``, the layout a scan consumes; amortize passes them so
when it runs the program on data, while :meth:`Amortizer.sample` takes data in
plate order, ``(country, time)`` or one series per country.

``u`` and ``w`` are covariates: during training the program draws them from
the design distribution Normal(0, 1) (standardized predictors), and at
inference they are observed. The amortized posterior is trained for panels
whose covariates look like draws from that design; standardize real
predictors before use. ``u_jt`` and ``w_jt`` act on the next year's ``y``, so
the last year's covariates carry no information, as in the paper.
"""

import csv
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

__all__ = ["model", "SIZES", "HYPER", "LOCAL", "load_csv"]

#: Training ranges of the paper: 2–30 countries, 5–20 years.
SIZES = {"country": (2, 30), "time": (5, 20)}

#: The ten hyper-parameters and the five kinds of country parameters.
HYPER = ("mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "mu_gamma", "sigma_gamma",
         "mu_delta", "sigma_delta", "mu_sigma", "sigma_sigma")
LOCAL = ("alpha", "beta", "gamma", "delta", "log_sigma")


def model(n_country, n_time, u=None, w=None, y=None):
    """Time-major data: ``u``, ``w``, ``y`` are ``(n_time, n_country)`` when given."""
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 0.5))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(0.25))
    mu_beta = numpyro.sample("mu_beta", dist.Normal(0.0, 0.2))
    sigma_beta = numpyro.sample("sigma_beta", dist.HalfNormal(0.15))
    mu_gamma = numpyro.sample("mu_gamma", dist.Normal(0.0, 0.5))
    sigma_gamma = numpyro.sample("sigma_gamma", dist.HalfNormal(0.25))
    mu_delta = numpyro.sample("mu_delta", dist.Normal(0.0, 0.5))
    sigma_delta = numpyro.sample("sigma_delta", dist.HalfNormal(0.25))
    mu_sigma = numpyro.sample("mu_sigma", dist.Normal(-1.0, 0.5))
    sigma_sigma = numpyro.sample("sigma_sigma", dist.HalfNormal(1.0))
    with numpyro.plate("country", n_country):
        alpha = numpyro.sample("alpha", dist.Normal(mu_alpha, sigma_alpha))
        beta = numpyro.sample("beta", dist.Normal(mu_beta, sigma_beta))
        gamma = numpyro.sample("gamma", dist.Normal(mu_gamma, sigma_gamma))
        delta = numpyro.sample("delta", dist.Normal(mu_delta, sigma_delta))
        log_sigma = numpyro.sample("log_sigma", dist.Normal(mu_sigma, sigma_sigma))
    sigma = jnp.exp(log_sigma)

    def year(previous, observed):
        t, u_t, w_t, y_t = observed
        y_prev, u_prev, w_prev = previous
        with numpyro.plate("country", n_country):
            u_t = numpyro.sample("u", dist.Normal(0.0, 1.0), obs=u_t)
            w_t = numpyro.sample("w", dist.Normal(0.0, 1.0), obs=w_t)
            first = t == 0
            loc = jnp.where(first, 0.5, alpha + y_prev * beta + u_prev * gamma + w_prev * delta)
            y_t = numpyro.sample("y", dist.Normal(loc, jnp.where(first, 1.0, sigma)), obs=y_t)
        return (y_t, u_t, w_t), None

    start = jnp.zeros(jnp.shape(alpha))
    scan(year, (start, start, start), (jnp.arange(n_time), u, w, y), length=n_time)


def load_csv(path, *, country="country", year="year", columns=("y", "u", "w")):
    """A long-format panel → one series per country, in year order.

    The Eurostat panel of the paper is not bundled; this reads a user's own
    CSV with one row per country and year.

    Parameters
    ----------
    path : str or Path
        CSV file with a header row.
    country, year : str
        Columns naming the country and the year (any sortable value).
    columns : sequence of str
        The response and covariate columns, named as the program's sites.

    Returns
    -------
    data : dict of site → list of ``(n_years_j,)`` float arrays
        Ready for ``amortizer.sample(data, coords=coords)``.
    coords : dict
        ``{"country": names}`` in the order of the series.

    Raises
    ------
    ValueError
        On a missing column, a non-numeric or empty value, or a year given
        twice for one country; each names the row.
    """
    with open(Path(path), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (country, year, *columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {reader.fieldnames}).")
        rows: dict[str, dict] = {}
        for line, row in enumerate(reader, start=2):
            key = row[year]
            series = rows.setdefault(row[country], {})
            if key in series:
                raise ValueError(f"{path}, line {line}: year {key} appears twice for country {row[country]}.")
            try:
                series[key] = [float(row[c]) for c in columns]
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: a value of {', '.join(columns)} is not a number "
                                 f"(missing years are left out, not left blank).") from None

    def year_order(value):
        try:
            return (0, float(value), value)
        except ValueError:
            return (1, 0.0, value)

    names = sorted(rows)
    data = {c: [] for c in columns}
    for name in names:
        values = np.array([rows[name][k] for k in sorted(rows[name], key=year_order)])
        for i, c in enumerate(columns):
            data[c].append(values[:, i])
    return data, {"country": names}
