"""The Wiener first-passage-time distribution: the diffusion decision model (DDM).

A Brownian motion with drift ``drift`` (ν, per second; diffusion coefficient 1)
starts at ``bias · boundary`` between absorbing boundaries at 0 and
``boundary`` (α). The decision is the boundary it reaches first (1 = upper,
0 = lower), the response time the first-passage time plus the non-decision
time ``non_decision`` (τ, seconds).

Everything below works in standardized time u = t / α² with standardized drift
ν·α, where the passage to the *lower* boundary has (Navarro & Fuss 2009)

    f(t | ν, α, w) = α⁻² · exp(-ν α w - ν² t / 2) · f(u | 0, 1, w)

with two series for the driftless density f(u | 0, 1, w):

    small time  (2π u³)^(-1/2) Σ_k (w + 2k) exp(-(w + 2k)² / (2u)),   k ∈ ℤ
    large time  π Σ_{k≥1} k exp(-k² π² u / 2) sin(k π w).

The upper boundary is the lower one with ν → -ν and w → 1 - w. Navarro &
Fuss choose the series and its length per evaluation from an error bound; a
vectorized evaluation needs one fixed program, so the series switch at
u = 1/2 and keep a fixed number of terms chosen from the same bounds: the
first omitted small-time term (k = ±4) is below exp(-49) and the first
omitted large-time term (k = 7) below exp(-120), far below the 1e-6 that
Navarro & Fuss target (the tests compare with an adaptive float64 evaluation).

The distribution function integrates each small-time term in closed form
(each image term is a Lévy passage density; with the drift it is an inverse
Gaussian distribution function) and each large-time term as an exponential
integral. Sampling inverts it exactly: the boundary is drawn with its
closed-form probability, the time by bisection of the distribution function
in log u, which needs no loop of unknown length and vectorizes over trials,
subjects and data sets.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.transforms import IdentityTransform, biject_to
from numpyro.distributions.util import promote_shapes

__all__ = ["DDM", "log_density", "distribution_function", "choice_probability"]

_SMALL_TERMS = 3  # images k = -3..3 of the small-time series
_LARGE_TERMS = 6  # k = 1..6 of the large-time series
_SWITCH = 0.5  # standardized time below which the small-time series is used
_BISECTIONS = 20  # halvings of the log-time bracket (about 7 units): relative time error below 1e-5


def _log_driftless_small(u, w):
    k = jnp.arange(-_SMALL_TERMS, _SMALL_TERMS + 1, dtype=u.dtype)
    image = w[..., None] + 2.0 * k
    # Exponents relative to the k = 0 image, the largest for w in (0, 1): no underflow as u → 0.
    terms = image * jnp.exp(-(image**2 - w[..., None] ** 2) / (2.0 * u[..., None]))
    total = jnp.maximum(jnp.sum(terms, axis=-1), jnp.finfo(u.dtype).tiny)
    return -0.5 * math.log(2.0 * math.pi) - 1.5 * jnp.log(u) - w**2 / (2.0 * u) + jnp.log(total)


def _log_driftless_large(u, w):
    k = jnp.arange(1, _LARGE_TERMS + 1, dtype=u.dtype)
    # Relative to the k = 1 term, whose sin(πw) > 0 dominates for u >= 1/2.
    terms = k * jnp.exp(-(k**2 - 1.0) * math.pi**2 * u[..., None] / 2.0) * jnp.sin(k * math.pi * w[..., None])
    total = jnp.maximum(jnp.sum(terms, axis=-1), jnp.finfo(u.dtype).tiny)
    return math.log(math.pi) - math.pi**2 * u / 2.0 + jnp.log(total)


def _log_density_lower(t, v, a, w):
    """Log density ``(...)`` of reaching the lower boundary at decision time ``t > 0`` (s)."""
    u = t / a**2
    small = u < _SWITCH
    # Each series is evaluated only where it is valid, so neither poisons the other's gradient.
    log_driftless = jnp.where(small, _log_driftless_small(jnp.where(small, u, _SWITCH), w),
                              _log_driftless_large(jnp.where(small, _SWITCH, u), w))
    return log_driftless - 2.0 * jnp.log(a) - v * a * w - v**2 * t / 2.0


def _float_arrays(*values):
    """The arguments as float arrays of one broadcast shape."""
    return jnp.broadcast_arrays(*(jnp.asarray(x, dtype=jnp.result_type(float)) for x in values))


def _mirrored(upper, drift, bias):
    """Drift and start of the process whose *lower* boundary is the given one: ν → -ν, w → 1 - w at the upper."""
    return jnp.where(upper, -drift, drift), jnp.where(upper, 1.0 - bias, bias)


def log_density(rt, decision, drift, boundary, non_decision, bias):
    """Log density of responses ``(rt, decision)`` under the DDM, broadcasting all arguments.

    Parameters
    ----------
    rt : array (...)
        Response times in seconds.
    decision : array (...)
        1 for the upper boundary, 0 for the lower one.
    drift, boundary, non_decision, bias : array (...)
        ν (1/s), α (> 0), τ (s, >= 0) and the relative starting point β in (0, 1).

    Returns
    -------
    array (...)
        log p(rt, decision); ``-inf`` where ``rt <= non_decision``.
    """
    rt, decision, drift, boundary, non_decision, bias = _float_arrays(
        rt, decision, drift, boundary, non_decision, bias)
    v, w = _mirrored(decision > 0.5, drift, bias)
    t = rt - non_decision
    valid = t > 0
    log_f = _log_density_lower(jnp.where(valid, t, 1.0), v, boundary, w)
    return jnp.where(valid, log_f, -jnp.inf)


def _log_lower_probability(v, w):
    """log P(lower boundary) in standardized units (α = 1), stable for every drift ``v``."""
    # P = e^{-2vw} (1 - e^{-2v(1-w)}) / (1 - e^{-2v}) for v > 0; the v < 0 case uses the mirror image.
    def positive(v, w):
        return -2.0 * v * w + jnp.log(-jnp.expm1(-2.0 * v * (1.0 - w))) - jnp.log(-jnp.expm1(-2.0 * v))

    near_zero = jnp.abs(v) < 1e-4
    v_safe = jnp.where(near_zero, 1e-4, jnp.abs(v))
    log_p_positive = positive(v_safe, jnp.where(v > 0, w, 1.0 - w))  # P(lower | v) or P(upper | -v)
    log_p = jnp.where(v > 0, log_p_positive, jnp.log(-jnp.expm1(log_p_positive)))
    # Near v = 0 the expansion P = (1 - w)(1 - v w) + O(v²) avoids 0/0.
    return jnp.where(near_zero, jnp.log1p(-w) + jnp.log1p(-v * w), log_p)


def choice_probability(drift, boundary, bias):
    """P(decision = 1): probability of reaching the upper boundary first, ``(...)``."""
    drift, boundary, bias = _float_arrays(drift, boundary, bias)
    return -jnp.expm1(_log_lower_probability(drift * boundary, bias))


def _lower_cdf(v, w, log_p):
    """P(lower boundary, standardized time <= u) as a function of ``u``, for standardized drift ``v``,
    start ``w`` and log P(lower) ``log_p``, all ``(...)``.

    The terms that do not depend on u are computed once, outside the sampler's bisection loop.
    """
    k = jnp.arange(-_SMALL_TERMS, _SMALL_TERMS + 1, dtype=v.dtype)
    image = w[..., None] + 2.0 * k
    distance, sign = jnp.abs(image), jnp.sign(image)
    drift = v[..., None]
    # Each image is a Lévy passage density; with the drift, ∫ e^{-v²s/2} ℓ_D(s) ds is an inverse
    # Gaussian distribution function: e^{-vD} Φ((vu - D)/√u) + e^{vD} Φ(-(vu + D)/√u).
    log_toward, log_away = -(v * w)[..., None] - drift * distance, -(v * w)[..., None] + drift * distance
    j = jnp.arange(1, _LARGE_TERMS + 1, dtype=v.dtype)
    rate = drift**2 / 2.0 + j**2 * math.pi**2 / 2.0
    weight = math.pi * jnp.exp(-v * w)[..., None] * j * jnp.sin(j * math.pi * w[..., None]) / rate
    p_lower = jnp.exp(log_p)

    def small(u):
        su = jnp.sqrt(u)[..., None]
        vu = drift * u[..., None]
        return jnp.sum(sign * (jnp.exp(log_toward + log_ndtr((vu - distance) / su))
                               + jnp.exp(log_away + log_ndtr(-(vu + distance) / su))), axis=-1)

    def large(u):
        return p_lower - jnp.sum(weight * jnp.exp(-rate * u[..., None]), axis=-1)

    def cdf(u):
        below = u < _SWITCH
        return jnp.where(below, small(jnp.where(below, u, _SWITCH)), large(jnp.where(below, _SWITCH, u)))

    return cdf


def distribution_function(rt, decision, drift, boundary, non_decision, bias):
    """P(decision, response time <= ``rt``): the defective distribution function of one boundary, ``(...)``."""
    rt, decision, drift, boundary, non_decision, bias = _float_arrays(
        rt, decision, drift, boundary, non_decision, bias)
    v, w = _mirrored(decision > 0.5, drift, bias)
    v = v * boundary
    u = jnp.maximum(rt - non_decision, 0.0) / boundary**2
    cdf = _lower_cdf(v, w, _log_lower_probability(v, w))(jnp.maximum(u, 1e-30))
    return jnp.where(u > 0, jnp.clip(cdf, 0.0, 1.0), 0.0)


def _sample_standard_time(key, v, w, log_p):
    """Standardized decision time at the lower boundary, by bisection of its distribution function in log u."""
    target = jax.random.uniform(key, v.shape, dtype=v.dtype) * jnp.exp(log_p)
    cdf = _lower_cdf(v, w, log_p)
    # Below (w/8)² the mass is under 2Φ(-8)·e^{2|v|w} ≈ 1e-15·e^{2|v|w}; beyond u_max the remaining mass,
    # below its first large-time term, is under 1e-7 of P(lower).
    rate = v**2 / 2.0 + math.pi**2 / 2.0
    u_max = (math.log(math.pi / 1e-7) - v * w - log_p - jnp.log(rate)) / rate
    low = 2.0 * jnp.log(w / 8.0)
    high = jnp.log(jnp.maximum(u_max, 2.0 * _SWITCH))

    def halve(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        below = cdf(jnp.exp(middle)) < target
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(0, _BISECTIONS, halve, (low, high))
    return jnp.exp(0.5 * (low + high))


def simulate(key, drift, boundary, non_decision, bias):
    """Exact draws ``(..., 2)`` of (response time in s, decision) for parameters of a common shape ``(...)``."""
    choice_key, time_key = jax.random.split(key)
    log_p_lower = _log_lower_probability(drift * boundary, bias)
    upper = jax.random.uniform(choice_key, drift.shape, dtype=drift.dtype) >= jnp.exp(log_p_lower)
    v, w = _mirrored(upper, drift, bias)
    v = v * boundary
    log_p = jnp.where(upper, jnp.log(-jnp.expm1(log_p_lower)), log_p_lower)
    u = _sample_standard_time(time_key, v, w, log_p)
    rt = non_decision + boundary**2 * u
    return jnp.stack([rt, upper.astype(rt.dtype)], axis=-1)


class _Responses(constraints.Constraint):
    """(response time > 0, decision in {0, 1}) pairs, the last axis of a DDM value."""

    event_dim = 1

    def __call__(self, x):
        return (x[..., 0] > 0) & ((x[..., 1] == 0) | (x[..., 1] == 1))

    def feasible_like(self, prototype):
        return jnp.stack([jnp.ones_like(prototype[..., 0]), jnp.zeros_like(prototype[..., 1])], axis=-1)

    def __repr__(self):
        return "ddm_responses (response time > 0 s, decision 0 or 1)"


responses = _Responses()


@biject_to.register(_Responses)
def _identity_for_responses(constraint):
    # A DDM value is always observed in inference; NumPyro only asks for a transform when it
    # initializes every site of a program, observed ones included (e.g. get_model_relations).
    return IdentityTransform()


class DDM(Distribution):
    """The diffusion decision model's joint distribution of (response time, decision).

    Parameters
    ----------
    drift : array
        ν, drift rate per second (diffusion coefficient 1); positive drifts toward the upper boundary.
    boundary : array
        α > 0, boundary separation.
    non_decision : array
        τ >= 0, non-decision time in seconds.
    bias : array
        β in (0, 1), starting point as a fraction of α (0.5 = unbiased).

    A value has shape ``(*batch_shape, 2)``: ``value[..., 0]`` is the
    response time in seconds and ``value[..., 1]`` the decision, 1 for the
    upper boundary and 0 for the lower one. ``sample`` is exact (see the
    module docstring); ``log_prob`` is the Wiener first-passage-time density
    (Navarro & Fuss 2009). With ``validate_args=True``, concrete values with
    a response time at or below the non-decision time or a decision other
    than 0 or 1 raise a ``ValueError`` that says which and how many.
    """

    arg_constraints = {
        "drift": constraints.real,
        "boundary": constraints.positive,
        "non_decision": constraints.nonnegative,
        "bias": constraints.open_interval(0.0, 1.0),
    }
    support = responses
    reparametrized_params = []

    def __init__(self, drift, boundary, non_decision, bias=0.5, *, validate_args=None):
        self.drift, self.boundary, self.non_decision, self.bias = promote_shapes(
            *(jnp.asarray(x, jnp.result_type(float)) for x in (drift, boundary, non_decision, bias)))
        batch_shape = jax.lax.broadcast_shapes(*(jnp.shape(x) for x in
                                                 (self.drift, self.boundary, self.non_decision, self.bias)))
        super().__init__(batch_shape=batch_shape, event_shape=(2,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        params = (jnp.broadcast_to(x, shape) for x in (self.drift, self.boundary, self.non_decision, self.bias))
        return simulate(key, *params)

    def log_prob(self, value):
        if self._validate_args:
            self._check_responses(value)
        return log_density(value[..., 0], value[..., 1], self.drift, self.boundary, self.non_decision, self.bias)

    def _check_responses(self, value):
        if isinstance(value, jax.core.Tracer) or isinstance(self.non_decision, jax.core.Tracer):
            return
        value = np.asarray(value)
        decision = value[..., 1]
        bad_codes = ~np.isin(decision, (0, 1))
        if bad_codes.any():
            raise ValueError(
                f"DDM decisions must be 0 (lower boundary) or 1 (upper boundary); {int(bad_codes.sum())} "
                f"value(s) are not, e.g. {decision[bad_codes].ravel()[0]!r}. Recode the responses "
                f"(e.g. 1 = 'word', 0 = 'nonword') before passing them.")
        rt = value[..., 0]
        too_fast = ~(rt > np.asarray(self.non_decision))
        if too_fast.any():
            raise ValueError(
                f"DDM response times must exceed the non-decision time (and 0): {int(too_fast.sum())} "
                f"response time(s) are at or below it (smallest {float(np.min(rt)):.4g} s, "
                f"non-decision time up to {float(np.max(self.non_decision)):.4g} s). Such responses have "
                f"zero density; remove fast guesses (e.g. rt < 0.18 s) or lower the non-decision time.")
