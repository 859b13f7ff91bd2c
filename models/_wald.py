"""Wald (inverse-Gaussian first-passage) accumulators and the two response modes of the HMM-EAM.

A Brownian motion with drift ``drift`` (ν > 0, per second; diffusion
coefficient 1) that starts at 0 first reaches the threshold ``threshold``
(α > 0) at a time t with the Wald density

    f(t | α, ν) = α (2π t³)^(-1/2) exp(-(α - ν t)² / (2t)),   t > 0,

an inverse Gaussian with mean α / ν and shape α². Its survival function is

    S(t | α, ν) = Φ((α - ν t) / √t) - exp(2αν) Φ(-(α + ν t) / √t),

evaluated here in log space (the second term is taken relative to the first,
so that neither ``exp(2αν)`` nor a tiny Φ overflows or underflows).

The hidden Markov evidence-accumulation model of Kucharský & Bürkner (2025)
has two response modes, each a distribution of the pair
(response time in s, response 1 = correct / 0 = error), shifted by a
non-decision time τ:

* guessing (state 0): one accumulator (α₁, ν₁); the response is a fair coin;
* controlled (state 1): two racing accumulators with a common threshold α₂,
  ν₂₁ toward the error and ν₂₂ toward the correct response; the first to
  finish gives the response and the time: the density is the winner's Wald
  density times the loser's survival function.

Sampling is exact (Michael, Schucany & Haas 1976 for the inverse Gaussian;
the race by simulating both accumulators).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes

from amortize.models._wiener import responses

__all__ = ["wald_log_density", "wald_log_survival", "sample_wald", "mode_log_density", "SwitchingWald"]

_LOG_2PI = float(np.log(2 * np.pi))


def wald_log_density(t, threshold, drift):
    """log f(t | α, ν), −∞ for t ≤ 0; every argument broadcasts."""
    positive = t > 0
    s = jnp.where(positive, t, 1.0)
    value = jnp.log(threshold) - 0.5 * (_LOG_2PI + 3 * jnp.log(s)) - (threshold - drift * s) ** 2 / (2 * s)
    return jnp.where(positive, value, -jnp.inf)


def wald_log_survival(t, threshold, drift):
    """log S(t | α, ν) = log P(passage time > t); 0 for t ≤ 0."""
    positive = t > 0
    s = jnp.where(positive, t, 1.0)
    root = jnp.sqrt(s)
    first = log_ndtr((threshold - drift * s) / root)
    second = 2 * threshold * drift + log_ndtr(-(threshold + drift * s) / root)
    # S > 0 exactly, so second < first; the clip only guards float round-off in the far tail.
    value = first + jnp.log1p(-jnp.exp(jnp.minimum(second - first, -1e-7)))
    return jnp.where(positive, value, 0.0)


def sample_wald(key, threshold, drift):
    """Exact passage times of the shape of ``threshold`` and ``drift`` broadcast together."""
    shape = jnp.broadcast_shapes(jnp.shape(threshold), jnp.shape(drift))
    normal_key, uniform_key = jax.random.split(key)
    mean = threshold / drift
    shape_parameter = threshold**2
    y = jax.random.normal(normal_key, shape) ** 2
    root = jnp.sqrt(4 * mean * shape_parameter * y + (mean * y) ** 2)
    # The smaller root μ + μ²y/(2λ) − μ/(2λ)·root, written as μ² / (larger root): no cancellation.
    x = mean**2 / (mean + mean**2 * y / (2 * shape_parameter) + mean / (2 * shape_parameter) * root)
    u = jax.random.uniform(uniform_key, shape)
    return jnp.where(u <= mean / (mean + x), x, mean**2 / x)


def mode_log_density(value, guess_threshold, guess_drift, threshold, drift_error, drift_correct, ndt):
    """``(..., 2)`` log densities of both modes for values ``(..., 2)`` (rt in s, response 0/1).

    Column 0 is the guessing mode, column 1 the controlled mode; −∞ where the
    response time is not above ``ndt``.
    """
    decision_time = value[..., 0] - ndt
    correct = value[..., 1] > 0.5
    guess = wald_log_density(decision_time, guess_threshold, guess_drift) + jnp.log(0.5)
    winner = jnp.where(correct, drift_correct, drift_error)
    loser = jnp.where(correct, drift_error, drift_correct)
    controlled = (wald_log_density(decision_time, threshold, winner)
                  + wald_log_survival(decision_time, threshold, loser))
    return jnp.stack([guess, controlled], axis=-1)


class SwitchingWald(Distribution):
    """(response time, response) of a trial in the guessing (``state`` 0) or controlled (1) mode.

    Parameters
    ----------
    state : int array
        0 = guessing (one accumulator, coin-flip response), 1 = controlled
        (two racing accumulators).
    guess_threshold, guess_drift : arrays
        α₁ > 0 and ν₁ > 0 of the guessing accumulator.
    threshold : array
        α₂ > 0, the controlled accumulators' common threshold.
    drift_error, drift_correct : arrays
        ν₂₁ > 0 and ν₂₂ > 0, the controlled accumulators' drifts.
    ndt : array
        τ ≥ 0, non-decision time in seconds, added to every response time.

    A value has shape ``(*batch_shape, 2)``: response time in seconds and the
    response, 1 = correct, 0 = error. ``log_prob`` is exact and −∞ where the
    response time is not above τ; with ``validate_args=True`` concrete values
    with a response time at or below 0 or a response other than 0 or 1 raise
    a ``ValueError``.
    """

    arg_constraints = {
        "state": constraints.integer_interval(0, 1),
        "guess_threshold": constraints.positive, "guess_drift": constraints.positive,
        "threshold": constraints.positive, "drift_error": constraints.positive,
        "drift_correct": constraints.positive, "ndt": constraints.nonnegative,
    }
    support = responses
    reparametrized_params = []

    def __init__(self, state, guess_threshold, guess_drift, threshold, drift_error, drift_correct, ndt, *,
                 validate_args=None):
        self.state = jnp.asarray(state)
        parameters = promote_shapes(*(jnp.asarray(x, jnp.result_type(float)) for x in
                                      (guess_threshold, guess_drift, threshold, drift_error, drift_correct, ndt)))
        (self.guess_threshold, self.guess_drift, self.threshold, self.drift_error, self.drift_correct,
         self.ndt) = parameters
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(self.state), *(jnp.shape(x) for x in parameters))
        super().__init__(batch_shape=batch_shape, event_shape=(2,), validate_args=validate_args)

    def _parameters(self, shape):
        return [jnp.broadcast_to(x, shape) for x in (self.guess_threshold, self.guess_drift, self.threshold,
                                                     self.drift_error, self.drift_correct, self.ndt)]

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        guess_threshold, guess_drift, threshold, drift_error, drift_correct, ndt = self._parameters(shape)
        guess_key, coin_key, error_key, correct_key = jax.random.split(key, 4)
        guess_time = sample_wald(guess_key, guess_threshold, guess_drift)
        coin = jax.random.bernoulli(coin_key, 0.5, shape)
        error_time = sample_wald(error_key, threshold, drift_error)
        correct_time = sample_wald(correct_key, threshold, drift_correct)
        controlled = jnp.broadcast_to(self.state, shape) == 1
        time = jnp.where(controlled, jnp.minimum(error_time, correct_time), guess_time) + ndt
        response = jnp.where(controlled, correct_time < error_time, coin)
        return jnp.stack([time, response.astype(time.dtype)], axis=-1)

    def log_prob(self, value):
        if self._validate_args:
            self._check_responses(value)
        modes = mode_log_density(value, *(x for x in (self.guess_threshold, self.guess_drift, self.threshold,
                                                       self.drift_error, self.drift_correct, self.ndt)))
        state = jnp.broadcast_to(self.state, modes.shape[:-1]).astype(jnp.int32)
        return jnp.take_along_axis(modes, state[..., None], axis=-1)[..., 0]

    @staticmethod
    def _check_responses(value):
        if isinstance(value, jax.core.Tracer):
            return
        value = np.asarray(value)
        bad_times = ~(value[..., 0] > 0)
        if bad_times.any():
            raise ValueError(f"Response times must be above 0 s; {int(bad_times.sum())} value(s) are not, e.g. "
                             f"{value[..., 0][bad_times].ravel()[0]!r}.")
        bad_codes = ~np.isin(value[..., 1], (0, 1))
        if bad_codes.any():
            raise ValueError(f"Responses must be 1 (correct) or 0 (error); {int(bad_codes.sum())} value(s) are "
                             f"not, e.g. {value[..., 1][bad_codes].ravel()[0]!r}.")
