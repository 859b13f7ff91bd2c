"""Two-level models to compare: pooled vs hierarchical (closed form), normal vs Student-t noise.

Nested pair with known variances, whose marginal likelihoods are Gaussian in
closed form (the correctness check of :func:`amortize.compare`):

    M1 "pooled":        mu ~ N(0, 1),  y_ij ~ N(mu, SIGMA)
    M2 "hierarchical":  mu ~ N(0, 1),  theta_j ~ N(mu, TAU),  y_ij ~ N(theta_j, SIGMA)

Non-nested pair without a closed form (a two-level model with unknown spread
and noise, differing only in the noise distribution):

    mu ~ N(0, 1),  tau ~ N+(0, 1),  sigma ~ N+(0, 1),  theta_j ~ N(mu, tau)
    y_ij ~ N(theta_j, sigma)              ("normal")
    y_ij ~ StudentT(3, theta_j, sigma)    ("student_t")

Data ``y`` has shape ``(group, obs)``.
"""

import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["pooled", "hierarchical", "normal_noise", "student_t_noise", "exact_log_marginal_likelihoods",
           "exact_model_probabilities", "SIGMA", "TAU", "SIZES"]

#: Known noise sd and group spread of the nested pair.
SIGMA = 1.0
TAU = 0.5
#: Training ranges of the benchmarks: 2–20 groups of 1–20 observations.
SIZES = {"group": (2, 20), "obs": (1, 20)}


def pooled(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("group", n_group, dim=-2), numpyro.plate("obs", n_obs, dim=-1):
        numpyro.sample("y", dist.Normal(mu, SIGMA), obs=y)


def hierarchical(n_group, n_obs, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("group", n_group, dim=-2):
        theta = numpyro.sample("theta", dist.Normal(mu, TAU))
        with numpyro.plate("obs", n_obs, dim=-1):
            numpyro.sample("y", dist.Normal(theta, SIGMA), obs=y)


def _two_level(noise):
    def model(n_group, n_obs, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("group", n_group, dim=-2):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            with numpyro.plate("obs", n_obs, dim=-1):
                numpyro.sample("y", noise(theta, sigma), obs=y)
    return model


normal_noise = _two_level(lambda loc, scale: dist.Normal(loc, scale))
normal_noise.__name__ = "normal_noise"
student_t_noise = _two_level(lambda loc, scale: dist.StudentT(3.0, loc, scale))
student_t_noise.__name__ = "student_t_noise"


def exact_log_marginal_likelihoods(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log p(y | M1) - c and log p(y | M2) - c of the nested pair, for a batch of data sets.

    Given mu, each group's sample mean is a sufficient statistic with
    ``ybar_j ~ N(mu, v_j)``, ``v_j = SIGMA² / n_j`` (pooled) or ``TAU² + SIGMA² / n_j``
    (hierarchical); the residuals around the group means have the same
    density under both models, so ``c`` (their log density) cancels in every
    ratio. Integrating ``mu ~ N(0, 1)`` out, ``ybar ~ N(0, diag(v) + 1 1ᵀ)``,
    whose log density follows from the matrix determinant lemma and
    Sherman–Morrison.

    Parameters
    ----------
    y : ``(B, group, obs)``
    mask : ``(B, group, obs)`` bool, which observations exist (groups with
        none are absent).

    Returns
    -------
    ``(B, 2)``: pooled, hierarchical.
    """
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, bool)
    counts = mask.sum(-1)
    present = counts > 0
    means = np.where(mask, y, 0.0).sum(-1) / np.maximum(counts, 1)
    out = []
    for group_var in (0.0, TAU**2):
        v = np.where(present, group_var + SIGMA**2 / np.maximum(counts, 1), 1.0)
        precision = np.where(present, 1.0 / v, 0.0)
        total_precision = precision.sum(-1)
        quadratic = (precision * means**2).sum(-1) - (precision * means).sum(-1) ** 2 / (1.0 + total_precision)
        log_det = np.where(present, np.log(v), 0.0).sum(-1) + np.log1p(total_precision)
        out.append(-0.5 * (quadratic + log_det + present.sum(-1) * np.log(2 * np.pi)))
    return np.stack(out, axis=-1)


def exact_model_probabilities(y: np.ndarray, mask: np.ndarray, prior=(0.5, 0.5)) -> np.ndarray:
    """Posterior model probabilities ``(B, 2)`` (pooled, hierarchical) of the nested pair."""
    log_posterior = exact_log_marginal_likelihoods(y, mask) + np.log(np.asarray(prior, np.float64))
    log_posterior -= log_posterior.max(-1, keepdims=True)
    weights = np.exp(log_posterior)
    return weights / weights.sum(-1, keepdims=True)
