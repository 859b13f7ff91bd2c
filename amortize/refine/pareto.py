"""Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024).

Self-normalized importance weights w_s = p(θ_s, y) / q(θ_s | y) have a
heavy right tail when q is too narrow somewhere p is not. PSIS fits a
generalized Pareto distribution to the largest weights and replaces them by
the fitted distribution's quantiles; the fitted shape k̂ is the diagnostic:

* k̂ ≤ 0.7 (and ≤ 1 − 1/log10(S) for small S): the smoothed estimate is reliable;
* k̂ > 0.7: the weights' variance is effectively infinite, estimates are not
  to be trusted, whatever the effective sample size says.

The shape is estimated as Zhang & Stephens (2009) propose, with the weakly
informative prior towards 0.5 of Vehtari et al. All functions take log
weights on the host (NumPy); non-finite log weights count as zero weight.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psis", "pareto_khat", "relative_ess", "khat_threshold", "resample", "log_mean_exp"]


def khat_threshold(num_draws: int) -> float:
    """The largest k̂ at which PSIS estimates are reliable with ``num_draws`` draws: min(1 − 1/log10 S, 0.7)."""
    return min(1.0 - 1.0 / math.log10(max(num_draws, 11)), 0.7)


def _tail_length(num_draws: int) -> int:
    return int(math.ceil(min(0.2 * num_draws, 3.0 * math.sqrt(num_draws))))


def _fit_generalized_pareto(x: np.ndarray) -> tuple[float, float]:
    """Shape k and scale σ of a generalized Pareto fit to ``x`` (sorted, positive)."""
    n = x.size
    m = 30 + int(math.sqrt(n))
    b = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b = b / (3.0 * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k = np.mean(np.log1p(-b[:, None] * x[None, :]), axis=1)
    profile = n * (np.log(-b / k) - k - 1.0)
    weights = 1.0 / np.sum(np.exp(profile[None, :] - profile[:, None]), axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    weights, b = weights[keep], b[keep]
    weights = weights / weights.sum()
    b_post = float(np.sum(b * weights))
    k_post = float(np.mean(np.log1p(-b_post * x)))
    sigma = -k_post / b_post
    shape = (n * k_post + 10 * 0.5) / (n + 10)  # weakly informative prior towards 0.5
    return shape, sigma


def _quantiles(p: np.ndarray, shape: float, sigma: float) -> np.ndarray:
    if abs(shape) < 1e-10:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-shape * np.log1p(-p)) / shape


def psis(log_weights) -> tuple[np.ndarray, float]:
    """Pareto-smooth log importance weights.

    Parameters
    ----------
    log_weights : array ``(S,)``
        Unnormalized log weights; NaN and -inf are weight zero.

    Returns
    -------
    smoothed : array ``(S,)``
        Smoothed, normalized log weights (log-sum-exp 0; -inf where the
        weight is zero).
    khat : float
        Estimated Pareto shape of the weights' right tail (inf when no weight
        is positive, NaN when too few draws to fit: fewer than 5 in the tail).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _psis(log_weights)


def _psis(log_weights) -> tuple[np.ndarray, float]:
    lw = np.asarray(log_weights, np.float64).reshape(-1).copy()
    lw[~np.isfinite(lw) & ~(lw == np.inf)] = -np.inf
    if np.any(lw == np.inf) or not np.any(np.isfinite(lw)):
        out = np.full(lw.shape, -np.inf)
        out[lw == np.inf] = -math.log(max(np.sum(lw == np.inf), 1))
        return out, math.inf
    lw = lw - np.max(lw)
    n = lw.size
    tail = _tail_length(n)
    khat = math.nan
    order = np.argsort(lw)
    finite = int(np.sum(np.isfinite(lw)))
    if finite <= tail:  # a handful of draws carry all the weight
        khat = math.inf
    elif tail >= 5:
        cutoff = lw[order[-tail - 1]]
        tail_index = order[-tail:]
        values = np.exp(lw[tail_index])
        excess = values - math.exp(cutoff)
        if excess[-1] <= 0:  # the largest weights are all equal: no tail at all
            khat = 0.0
        elif np.sum(excess > 0) < 5:
            khat = math.inf
        else:
            shape, sigma = _fit_generalized_pareto(np.maximum(excess, np.finfo(float).tiny))
            khat = shape
            if np.isfinite(shape) and sigma > 0:
                smoothed = math.exp(cutoff) + _quantiles((np.arange(1, tail + 1) - 0.5) / tail, shape, sigma)
                lw[tail_index] = np.log(np.minimum(smoothed, 1.0))  # never above the largest raw weight
    lw = lw - log_mean_exp(lw) - math.log(n)
    return lw, float(khat)


def pareto_khat(log_weights) -> float:
    """k̂ of the weights' right tail (see :func:`psis`)."""
    return psis(log_weights)[1]


def log_mean_exp(values, axis=None):
    """log(mean(exp(values))) along ``axis``, stable; -inf where every value is -inf."""
    values = np.asarray(values, np.float64)
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.mean(np.exp(values - peak), axis=axis, keepdims=True)) + peak
    return out.squeeze(axis) if axis is not None else float(out.reshape(()))


def relative_ess(log_weights, axis=-1) -> np.ndarray:
    """Effective sample size of self-normalized weights over the number of draws: (Σw)² / (S Σw²).

    1 for equal weights, 1/S when one weight dominates, 0 when no weight is positive.
    """
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isnan(lw), -np.inf, lw)
    peak = np.max(lw, axis=axis, keepdims=True)
    w = np.exp(lw - np.where(np.isfinite(peak), peak, 0.0))
    total = np.sum(w, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = total**2 / np.sum(w**2, axis=axis)
    return np.nan_to_num(ess, nan=0.0) / lw.shape[axis]


def resample(rng: np.random.Generator, log_weights, size: int) -> np.ndarray:
    """Indices of ``size`` draws by systematic resampling from normalized log weights, in random order."""
    lw = np.asarray(log_weights, np.float64)
    w = np.exp(lw - np.max(lw))
    cumulative = np.cumsum(w / w.sum())
    cumulative[-1] = 1.0
    positions = (rng.uniform() + np.arange(size)) / size
    index = np.searchsorted(cumulative, positions, side="right")
    return rng.permutation(np.minimum(index, lw.size - 1))
