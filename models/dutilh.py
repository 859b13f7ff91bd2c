"""The hidden Markov evidence-accumulation model of the mixture paper, for Dutilh et al.'s switching data.

Kucharský & Bürkner (2025), "Amortized Bayesian Mixture Models", case study
"hmm-eam": one participant's trials t = 1..T follow a two-state hidden Markov
chain, 0 = fast guessing and 1 = controlled responding::

    rho_11, rho_22 ~ Beta(16, 4)                  probabilities of staying in state 0 / state 1
    alpha_1 ~ Normal+(0.5, 0.3)                    guessing threshold
    alpha_diff ~ Normal+(1.5, 0.5)                 alpha_2 = alpha_1 + alpha_diff, controlled threshold
    nu_1 ~ Normal+(5.5, 1.0)                       guessing drift
    nu_21 ~ Normal+(2.5, 0.5)                      controlled drift toward the error
    nu_diff ~ Normal+(2.5, 1.0)                    nu_22 = nu_21 + nu_diff, toward the correct response
    tau ~ Exponential(mean 0.2 s)                  non-decision time
    z_1 ~ Categorical(0.5, 0.5),  z_t ~ Categorical(row z_(t-1) of [[rho_11, 1 - rho_11], [1 - rho_22, rho_22]])
    y_t ~ SwitchingWald(z_t, ...)                  (response time in s, response 1 = correct / 0 = error)

Normal+ is a normal truncated to positive values. ``alpha_2`` and ``nu_22``
are derived (:func:`derived`). The trials are the program's ordered level
``trial``, written as a NumPyro ``scan``.

A non-decision time at or above a participant's fastest response has zero
likelihood. Simulated data never have one; on real data an amortized draw of
``tau`` above the fastest response gets density zero in the certificate and
weight zero after ``refine="psis"``, and :func:`impossible_tau` counts such
draws so that a figure never shows them silently. The NUTS reference,
:func:`marginal_model`, draws ``tau`` from the prior truncated at the fastest
response: the truncation changes the prior by a constant factor on the
region of positive likelihood, so the posterior is the same, and NUTS needs no
wall in its parameter space.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

from amortize.models._wald import SwitchingWald, mode_log_density, sample_wald, wald_log_density, wald_log_survival

__all__ = ["model", "marginal_model", "state_probabilities", "derived", "impossible_tau", "load", "SwitchingWald",
           "wald_log_density", "wald_log_survival", "sample_wald", "PARAMETERS", "SIZES"]

#: The continuous parameters, in the order of :func:`state_probabilities`'s ``parameters``.
PARAMETERS = ("rho_11", "rho_22", "alpha_1", "alpha_diff", "nu_1", "nu_21", "nu_diff", "tau")
#: Training range of the chain's length: the first 400 trials of each participant (C has 333).
SIZES = {"trial": (300, 400)}


def _positive_normal(loc, scale):
    return dist.TruncatedNormal(loc, scale, low=0.0)


def _parameters(tau_prior, tau_factor=False):
    rho_11 = numpyro.sample("rho_11", dist.Beta(16.0, 4.0))
    rho_22 = numpyro.sample("rho_22", dist.Beta(16.0, 4.0))
    alpha_1 = numpyro.sample("alpha_1", _positive_normal(0.5, 0.3))
    alpha_diff = numpyro.sample("alpha_diff", _positive_normal(1.5, 0.5))
    nu_1 = numpyro.sample("nu_1", _positive_normal(5.5, 1.0))
    nu_21 = numpyro.sample("nu_21", _positive_normal(2.5, 0.5))
    nu_diff = numpyro.sample("nu_diff", _positive_normal(2.5, 1.0))
    tau = numpyro.sample("tau", tau_prior)
    if tau_factor:  # tau_prior was Uniform(0, fastest response): the Exponential prior's density on it
        numpyro.factor("tau_prior", dist.Exponential(5.0).log_prob(tau))
    transition = jnp.stack([jnp.stack([rho_11, 1 - rho_11]), jnp.stack([1 - rho_22, rho_22])])
    emission = (alpha_1, nu_1, alpha_1 + alpha_diff, nu_21, nu_21 + nu_diff, tau)
    return transition, emission


def model(n_trial, y=None):
    """The HMM-EAM with its hidden chain ``z`` as a ``scan``; ``y``: ``(trial, 2)`` (rt in s, response)."""
    transition, emission = _parameters(dist.Exponential(5.0))

    def step(previous, y_t):
        probs = jnp.where(previous < 0, 0.5, transition[jnp.maximum(previous, 0)])
        z = numpyro.sample("z", dist.Categorical(probs))
        numpyro.sample("y", SwitchingWald(z, *emission), obs=y_t)
        return z, None

    scan(step, jnp.array(-1), y, length=n_trial)


def _forward(log_emission, log_transition):
    """Log forward messages ``(T, 2)`` and log likelihood of emissions ``(T, 2)``; z_1 ~ (0.5, 0.5)."""
    def step(log_alpha, e_t):
        new = jax.nn.logsumexp(log_alpha[:, None] + log_transition, axis=0) + e_t
        return new, new

    first = jnp.log(0.5) + log_emission[0]
    last, rest = jax.lax.scan(step, first, log_emission[1:])
    return jnp.concatenate([first[None], rest]), jax.nn.logsumexp(last)


def marginal_model(y):
    """The same posterior with the chain summed out by the forward algorithm, for NUTS.

    ``y``: ``(trial, 2)``, observed. ``tau`` is drawn from its prior truncated
    at the fastest response (the same posterior, see the module docstring),
    written as ``Uniform(0, fastest)`` times the Exponential density (a
    ``numpyro.factor``); the data enter through a second factor, the log likelihood.
    """
    y = jnp.asarray(y)
    fastest = jnp.min(y[:, 0])
    transition, emission = _parameters(dist.Uniform(0.0, fastest), tau_factor=True)
    log_emission = mode_log_density(y, *emission)
    _, log_likelihood = _forward(log_emission, jnp.log(transition))
    numpyro.factor("y_log_likelihood", log_likelihood)


def state_probabilities(y, parameters):
    """Exact filtered and smoothed state probabilities given the parameters (forward–backward).

    Parameters
    ----------
    y : ``(T, 2)``
        Response times (s) and responses.
    parameters : dict
        The draws of :data:`PARAMETERS`, each of shape ``batch`` (any common shape).

    Returns
    -------
    filtered, smoothed : ``(*batch, T)``
        p(z_t = 1 | y_1:t, θ) and p(z_t = 1 | y_1:T, θ): the probability of the controlled state.
    log_likelihood : ``batch``
        log p(y | θ), the chain summed out.
    """
    y = jnp.asarray(y)

    def one(theta):
        rho_11, rho_22, alpha_1, alpha_diff, nu_1, nu_21, nu_diff, tau = theta
        transition = jnp.log(jnp.stack([jnp.stack([rho_11, 1 - rho_11]), jnp.stack([1 - rho_22, rho_22])]))
        log_emission = mode_log_density(y, alpha_1, nu_1, alpha_1 + alpha_diff, nu_21, nu_21 + nu_diff, tau)
        log_alpha, log_likelihood = _forward(log_emission, transition)

        def back(log_beta_next, e_next):
            log_beta = jax.nn.logsumexp(transition + (e_next + log_beta_next)[None, :], axis=1)
            return log_beta, log_beta

        _, betas = jax.lax.scan(back, jnp.zeros(2), log_emission[1:], reverse=True)
        log_beta = jnp.concatenate([betas, jnp.zeros((1, 2))])
        filtered = jax.nn.softmax(log_alpha, axis=-1)[:, 1]
        smoothed = jax.nn.softmax(log_alpha + log_beta, axis=-1)[:, 1]
        return filtered, smoothed, log_likelihood

    stacked = jnp.stack([jnp.asarray(parameters[name], jnp.float32) for name in PARAMETERS], axis=-1)
    batch = stacked.shape[:-1]
    filtered, smoothed, log_likelihood = jax.jit(jax.vmap(one))(stacked.reshape(-1, len(PARAMETERS)))
    steps = y.shape[0]
    return (filtered.reshape(batch + (steps,)), smoothed.reshape(batch + (steps,)),
            log_likelihood.reshape(batch))


def derived(parameters: dict) -> dict:
    """The paper's parametrization: ``alpha_2 = alpha_1 + alpha_diff`` and ``nu_22 = nu_21 + nu_diff``, added."""
    out = dict(parameters)
    out["alpha_2"] = np.asarray(parameters["alpha_1"]) + np.asarray(parameters["alpha_diff"])
    out["nu_22"] = np.asarray(parameters["nu_21"]) + np.asarray(parameters["nu_diff"])
    return out


def impossible_tau(tau, y) -> float:
    """Fraction of ``tau`` draws at or above the fastest response time of ``y (T, 2)`` (zero likelihood)."""
    return float(np.mean(np.asarray(tau) >= np.min(np.asarray(y)[:, 0])))


def load(folder, *, trials: int = 400) -> dict[str, dict[str, np.ndarray]]:
    """Read Dutilh et al.'s speed–accuracy switching data, the first ``trials`` trials per participant.

    Parameters
    ----------
    folder : path
        The shared ``dutilh2010_speed_accuracy_switching`` folder (``dutilh2010.csv``).
    trials : int
        Trials kept per participant, from the first (the paper: 400; participant C has 333).

    Returns
    -------
    dict
        ``{participant: {"y": (T, 2) float32 (rt in s, 1 = correct / 0 = error),
        "pacc": (T,) int (pay-off for accuracy, 0–24)}}`` for participants A–K in order.
    """
    path = Path(folder) / "dutilh2010.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass the shared dutilh2010_speed_accuracy_switching folder.")
    rows: dict[str, list[tuple[float, float, int]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["subject"], []).append((float(row["rt"]), float(row["correct"]), int(row["pacc"])))
    out = {}
    for participant in sorted(rows):
        kept = np.asarray(rows[participant][:trials])
        out[participant] = {"y": kept[:, :2].astype(np.float32), "pacc": kept[:, 2].astype(np.int64)}
    return out
